"""Evaluation protocols: leave-one-out, last-N and per-user ratio splits by time, a global temporal split, and the
seed write-up's random window split.

Only the global temporal split never shows a model the future: the per-user splits hold out each user's latest
interactions, but one user's test item may come before another user's training items (see the evaluation docs).
"""

from __future__ import annotations

from typing import Literal

import attrs
import numpy as np

from recplug.api import (
    EvalCases,
    Interactions,
    RunContext,
    SpecError,
    Split,
    Splitter,
    TrainView,
    format_moment,
    hookimpl,
    parse_moment,
)


@attrs.frozen
class LeaveOneOutOptions:
    min_interactions: int = attrs.field(
        default=3,
        validator=attrs.validators.ge(3),
        metadata={"doc": "Users with fewer interactions are kept for training only and not evaluated."},
    )
    validation_users: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.ge(1)),
        metadata={"doc": "How many evaluated users (a random sample, drawn with the experiment's seed) hold out "
                         "their second-to-last interaction for validation; the others train on it, as in protocols "
                         "without a validation item. Default: every evaluated user."},
    )  # fmt: skip


class LeaveOneOut(Splitter):
    """Per user by time: last interaction = test, second-to-last = validation (for every user, or for a sample of
    ``validation_users``; the others train on it), the rest = training."""

    options: LeaveOneOutOptions

    def split(self, data: Interactions, context: RunContext) -> Split:
        evaluated = data.lengths >= self.options.min_interactions
        validated = _sample_users(evaluated, self.options.validation_users, context.seed)
        train, validation, test = _tail_split(data, evaluated.astype(np.int64), validated.astype(np.int64))
        protocol = {
            "splitter": "leave_one_out",
            "min_interactions": self.options.min_interactions,
            "evaluated_users": int(evaluated.sum()),
            "training_only_users": int(len(evaluated) - evaluated.sum()),
            "history": "all earlier interactions of the user",
            "seen_items": "all earlier interactions of the user",
        }
        if self.options.validation_users is not None:  # recorded only when asked: older results stay comparable
            protocol["validation_users"] = int(validated.sum())
        return Split("leave_one_out", train, validation, test, protocol)


@attrs.frozen
class SeedWindowOptions:
    sequence_length: int = attrs.field(
        default=5, validator=attrs.validators.ge(1), metadata={"doc": "Context length of a window (the history)."}
    )
    stride: int = attrs.field(
        default=1, validator=attrs.validators.ge(1), metadata={"doc": "Step between consecutive windows of a user."}
    )
    min_context: int = attrs.field(
        default=1, validator=attrs.validators.ge(1), metadata={"doc": "Fewest real items in a window's context."}
    )
    test_fraction: float = attrs.field(
        default=0.1,
        validator=[attrs.validators.gt(0.0), attrs.validators.lt(1.0)],
        metadata={"doc": "Fraction of windows held out at random and reported (the seed's 'validation' set)."},
    )
    validation_fraction: float = attrs.field(
        default=0.02,
        validator=[attrs.validators.ge(0.0), attrs.validators.lt(0.5)],
        metadata={"doc": "Further fraction held out for early stopping, so the reported windows stay untouched."},
    )


class SeedWindows(Splitter):
    """The seed write-up's protocol: random windows held out. Leaks the future; for comparison only."""

    options: SeedWindowOptions

    def split(self, data: Interactions, context: RunContext) -> Split:
        opts = self.options
        position = np.arange(data.n_interactions, dtype=np.int64)
        user_start = np.repeat(data.offsets[:-1], data.lengths)
        offset_in_user = position - user_start
        eligible = (offset_in_user >= opts.min_context) & ((offset_in_user - opts.min_context) % opts.stride == 0)
        windows = np.flatnonzero(eligible)
        rng = np.random.default_rng(context.seed)
        shuffled = rng.permutation(windows)
        n_test = int(round(len(windows) * opts.test_fraction))
        n_val = int(round(len(windows) * opts.validation_fraction))
        test_pos = np.sort(shuffled[:n_test])
        val_pos = np.sort(shuffled[n_test : n_test + n_val])
        held_out = np.zeros(data.n_interactions, dtype=bool)
        held_out[shuffled[: n_test + n_val]] = True
        is_target = eligible & ~held_out
        train = TrainView(data, visible=~held_out, is_target=is_target)
        protocol = {
            "splitter": "seed_windows",
            **attrs.asdict(opts),
            "seed": context.seed,
            "train_windows": int(is_target.sum()),
            "validation_windows": int(n_val),
            "test_windows": int(n_test),
            "history": "all earlier interactions of the user (a model uses as many as its context holds)",
            "seen_items": f"the {opts.sequence_length} items before the target (the window's context)",
        }
        return Split("seed_windows", train, self._cases(data, val_pos), self._cases(data, test_pos), protocol)

    def _cases(self, data: Interactions, target_pos: np.ndarray) -> EvalCases:
        users = data.user_of[target_pos].astype(np.int64)
        window_start = np.maximum(data.offsets[users], target_pos - self.options.sequence_length)
        return EvalCases(users, data.offsets[users], target_pos, exclude_start=window_start)


def _sample_users(eligible: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """A mask of ``size`` eligible users drawn at random with ``seed`` (all of them when ``size`` is None or at
    least their number)."""
    candidates = np.flatnonzero(eligible)
    if size is None or size >= len(candidates):
        return eligible.copy()
    chosen = np.zeros_like(eligible)
    chosen[np.random.default_rng(seed).choice(candidates, size=size, replace=False)] = True
    return chosen


def _tail_split(data: Interactions, n_test: np.ndarray, n_validation: np.ndarray) -> tuple[TrainView, EvalCases, EvalCases]:
    """Per user, the last ``n_test`` interactions are test cases, the ``n_validation`` before them validation cases,
    and the rest training; each case's history is every earlier interaction of its user."""
    ends = data.offsets[1:]
    held_out = (n_test + n_validation).astype(np.int64)
    train_end = np.repeat(ends - held_out, data.lengths)
    position = np.arange(data.n_interactions, dtype=np.int64)
    visible = position < train_end
    test_end = np.repeat(ends - n_test, data.lengths)
    is_validation = ~visible & (position < test_end)
    is_test = position >= test_end
    return (_training(data, visible), _cases_at(data, np.flatnonzero(is_validation)),
            _cases_at(data, np.flatnonzero(is_test)))  # fmt: skip


def _training(data: Interactions, visible: np.ndarray) -> TrainView:
    """The visible interactions as training data: each is a target except a user's first (it has no history)."""
    is_first = np.zeros(data.n_interactions, dtype=bool)
    is_first[data.offsets[:-1][data.lengths > 0]] = True
    return TrainView(data, visible=visible, is_target=visible & ~is_first)


def _cases_at(data: Interactions, target_pos: np.ndarray) -> EvalCases:
    """Cases predicting the interactions at ``target_pos`` from all earlier interactions of their users."""
    users = data.user_of[target_pos].astype(np.int64)
    return EvalCases(users, data.offsets[users], target_pos.astype(np.int64))


@attrs.frozen
class LastNOptions:
    test_n: int = attrs.field(
        default=1, validator=attrs.validators.ge(1), metadata={"doc": "Each user's last test_n interactions are test cases."}
    )
    validation_n: int = attrs.field(
        default=1, validator=attrs.validators.ge(1),
        metadata={"doc": "The validation_n interactions before them are validation cases."},
    )  # fmt: skip
    min_training: int = attrs.field(
        default=1, validator=attrs.validators.ge(1),
        metadata={"doc": "Users left with fewer training interactions are kept for training only, not evaluated."},
    )  # fmt: skip


class LastN(Splitter):
    """Per user by time: the last ``test_n`` interactions are test cases, the ``validation_n`` before them
    validation cases (leave-one-out is ``test_n = validation_n = 1``)."""

    options: LastNOptions

    def split(self, data: Interactions, context: RunContext) -> Split:
        o = self.options
        evaluated = data.lengths >= o.test_n + o.validation_n + o.min_training
        n_test, n_validation = np.where(evaluated, o.test_n, 0), np.where(evaluated, o.validation_n, 0)
        train, validation, test = _tail_split(data, n_test, n_validation)
        protocol = {"splitter": "last_n", **attrs.asdict(o), **_counts(evaluated),
                    "history": "all earlier interactions of the user", "seen_items": "all earlier interactions of the user"}  # fmt: skip
        return Split("last_n", train, validation, test, protocol)


def _fraction(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"'{attribute.name}' must be between 0 and 1 (exclusive), got {value}")


@attrs.frozen
class RatioOptions:
    test_fraction: float = attrs.field(
        default=0.2, validator=_fraction,
        metadata={"doc": "The latest share of each user's interactions held out as test cases (at least one)."},
    )  # fmt: skip
    validation_fraction: float = attrs.field(
        default=0.1, validator=_fraction,
        metadata={"doc": "The share before them held out as validation cases (at least one)."},
    )  # fmt: skip
    min_interactions: int = attrs.field(
        default=3, validator=attrs.validators.ge(3),
        metadata={"doc": "Users with fewer interactions are kept for training only and not evaluated."},
    )  # fmt: skip

    def __attrs_post_init__(self) -> None:
        if self.test_fraction + self.validation_fraction >= 1.0:
            raise ValueError("test_fraction + validation_fraction must leave some training data (sum below 1)")


class Ratio(Splitter):
    """Per user by time: the latest ``test_fraction`` of each user's interactions are test cases, the
    ``validation_fraction`` before them validation cases, the rest training (each rounded down, at least one,
    and at least one training interaction left)."""

    options: RatioOptions

    def split(self, data: Interactions, context: RunContext) -> Split:
        o = self.options
        lengths = data.lengths
        evaluated = lengths >= o.min_interactions
        n_test = np.maximum(np.floor(lengths * o.test_fraction), 1).astype(np.int64)
        n_validation = np.maximum(np.floor(lengths * o.validation_fraction), 1).astype(np.int64)
        n_validation = np.minimum(n_validation, np.maximum(lengths - n_test - 1, 0))
        n_test, n_validation = np.where(evaluated, n_test, 0), np.where(evaluated, n_validation, 0)
        train, validation, test = _tail_split(data, n_test, n_validation)
        protocol = {"splitter": "ratio", **attrs.asdict(o), **_counts(evaluated),
                    "history": "all earlier interactions of the user", "seen_items": "all earlier interactions of the user"}  # fmt: skip
        return Split("ratio", train, validation, test, protocol)


def _counts(evaluated: np.ndarray) -> dict[str, int]:
    return {"evaluated_users": int(evaluated.sum()), "training_only_users": int((~evaluated).sum())}


def _moment_or_none(instance: object, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None:
        parse_moment(value, "s")  # raises ValueError naming the expected form


@attrs.frozen
class TemporalOptions:
    test_start: str | None = attrs.field(
        default=None, validator=_moment_or_none,
        metadata={"doc": "Interactions from this moment on (ISO 8601: '2002-01-01' or '2002-01-01T12:00:00') are "
                         "test cases; default: the test_quantile of all interaction times."},
    )  # fmt: skip
    test_quantile: float = attrs.field(
        default=0.9, validator=_fraction, metadata={"doc": "Where the test period starts, as a quantile of all times."}
    )
    validation_start: str | None = attrs.field(
        default=None, validator=_moment_or_none,
        metadata={"doc": "Interactions from this moment until the test period are validation cases; default: the "
                         "validation_quantile of all interaction times."},
    )  # fmt: skip
    validation_quantile: float = attrs.field(
        default=0.8, validator=_fraction,
        metadata={"doc": "Where the validation period starts, as a quantile of all times."},
    )
    targets: Literal["all", "first"] = attrs.field(
        default="all",
        metadata={"doc": "'all': every interaction of a period is a case; 'first': only each user's first one in "
                         "the period (one case per user)."},
    )
    min_history: int = attrs.field(
        default=1, validator=attrs.validators.ge(1),
        metadata={"doc": "Fewest earlier interactions a case needs (a user's very first interaction cannot be "
                         "predicted from a history)."},
    )

    def __attrs_post_init__(self) -> None:
        if self.test_start is None and self.validation_start is None and self.validation_quantile >= self.test_quantile:
            raise ValueError("validation_quantile must be below test_quantile")
        if self.test_start is not None and self.validation_start is not None:
            if parse_moment(self.validation_start, "s") >= parse_moment(self.test_start, "s"):
                raise ValueError("validation_start must be before test_start")


class Temporal(Splitter):
    """A global temporal split: one moment cuts every user's sequence. Training sees only interactions before the
    validation period; validation and test cases are the interactions in their periods, each predicted from all
    earlier interactions of its user. No model sees anything later than what it predicts."""

    options: TemporalOptions

    def split(self, data: Interactions, context: RunContext) -> Split:
        o = self.options
        unit = data.time_unit
        times = np.asarray(data.timestamps)
        test_cut = self._cut(times, o.test_start, o.test_quantile, unit)
        validation_cut = self._cut(times, o.validation_start, o.validation_quantile, unit)
        if validation_cut >= test_cut:
            raise SpecError(f"the validation period starts at or after the test period ({format_moment(validation_cut, unit)} "
                            f">= {format_moment(test_cut, unit)})", where="splits.temporal")  # fmt: skip
        position = np.arange(data.n_interactions, dtype=np.int64)
        has_history = position - np.repeat(data.offsets[:-1], data.lengths) >= o.min_history
        visible = times < validation_cut
        train = _training(data, visible)
        validation = self._cases(data, ~visible & (times < test_cut) & has_history)
        test = self._cases(data, (times >= test_cut) & has_history)
        if len(test) == 0:
            raise SpecError(f"no interaction falls in the test period (from {format_moment(test_cut, unit)}; the data ends "
                            f"{format_moment(int(times.max(initial=0)), unit)})", where="splits.temporal")  # fmt: skip
        trained_users = np.zeros(data.n_users, dtype=bool)
        trained_users[data.user_of[visible]] = True
        protocol = {
            "splitter": "temporal",
            **attrs.asdict(o),
            "validation_from": format_moment(validation_cut, unit),
            "test_from": format_moment(test_cut, unit),
            "training_interactions": int(visible.sum()),
            "validation_cases": len(validation),
            "test_users": int(len(np.unique(test.users))),
            "test_users_without_training_data": int((~trained_users[np.unique(test.users)]).sum()),
            "history": "all earlier interactions of the user, also those after the cut",
            "seen_items": "all earlier interactions of the user",
        }
        return Split("temporal", train, validation, test, protocol)

    @staticmethod
    def _cut(times: np.ndarray, start: str | None, quantile: float, unit: str) -> int:
        if start is not None:
            return parse_moment(start, unit)
        return int(np.quantile(times, quantile, method="higher")) if len(times) else 0

    def _cases(self, data: Interactions, is_case: np.ndarray) -> EvalCases:
        positions = np.flatnonzero(is_case)
        if self.options.targets == "first" and len(positions):
            users = data.user_of[positions]
            positions = positions[np.concatenate([[True], users[1:] != users[:-1]])]
        return _cases_at(data, positions)


@hookimpl
def register_components(register) -> None:
    register.splitter("leave_one_out", LeaveOneOut, LeaveOneOutOptions)
    register.splitter("last_n", LastN, LastNOptions)
    register.splitter("ratio", Ratio, RatioOptions)
    register.splitter("temporal", Temporal, TemporalOptions)
    register.splitter("seed_windows", SeedWindows, SeedWindowOptions)
