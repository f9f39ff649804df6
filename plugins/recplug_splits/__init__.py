"""Evaluation protocols: leave-one-out by time, and the seed write-up's random window split."""

from __future__ import annotations

import attrs
import numpy as np

from recplug.api import EvalCases, Interactions, RunContext, Split, Splitter, TrainView, hookimpl


@attrs.frozen
class LeaveOneOutOptions:
    min_interactions: int = attrs.field(
        default=3,
        validator=attrs.validators.ge(3),
        metadata={"doc": "Users with fewer interactions are kept for training only and not evaluated."},
    )


class LeaveOneOut(Splitter):
    """Per user by time: last interaction = test, second-to-last = validation, the rest = training."""

    options: LeaveOneOutOptions

    def split(self, data: Interactions, context: RunContext) -> Split:
        starts, ends = data.offsets[:-1], data.offsets[1:]
        evaluated = data.lengths >= self.options.min_interactions
        users = np.flatnonzero(evaluated).astype(np.int64)
        position = np.arange(data.n_interactions, dtype=np.int64)
        owner_end = np.repeat(np.where(evaluated, ends - 2, ends), data.lengths)
        visible = position < owner_end
        is_first = np.zeros(data.n_interactions, dtype=bool)
        is_first[starts[data.lengths > 0]] = True
        train = TrainView(data, visible=visible, is_target=visible & ~is_first)
        validation = EvalCases(users, starts[users], ends[users] - 2)
        test = EvalCases(users, starts[users], ends[users] - 1)
        protocol = {
            "splitter": "leave_one_out",
            "min_interactions": self.options.min_interactions,
            "evaluated_users": int(len(users)),
            "training_only_users": int((~evaluated).sum()),
            "history": "all earlier interactions of the user",
            "seen_items": "all earlier interactions of the user",
        }
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


@hookimpl
def register_components(register) -> None:
    register.splitter("leave_one_out", LeaveOneOut, LeaveOneOutOptions)
    register.splitter("seed_windows", SeedWindows, SeedWindowOptions)
