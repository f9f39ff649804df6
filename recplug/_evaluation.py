"""Full-ranking evaluation: score all items, exclude seen ones, take the top k, rank the target.

Everything is batched tensor work; metrics then reduce the :class:`RankedLists`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs
import numpy as np
import torch
from tqdm import tqdm

from ._config import unknown_name_message
from ._errors import SpecError
from ._metric import Metric, RankedLists
from ._split import EvalCases, gather_histories
from ._statistics import TESTS

if TYPE_CHECKING:
    from ._components import Recommender
    from ._data import Interactions


def _positive_ks(instance: object, attribute: attrs.Attribute, value: list[int]) -> None:
    if not value:
        raise ValueError(f"'{attribute.name}' must list at least one cutoff")
    if any(k <= 0 for k in value):
        raise ValueError(f"'{attribute.name}' must be positive cutoffs, got {value}")


def _non_empty(instance: object, attribute: attrs.Attribute, value: list[str]) -> None:
    if not value:
        raise ValueError(f"'{attribute.name}' must name at least one metric")


@attrs.frozen
class EvaluationOptions:
    metrics: list[str] = attrs.field(
        factory=lambda: ["mrr", "map", "ndcg", "hit_rate"],
        validator=_non_empty,
        metadata={"doc": "Metric plugins to compute (see `recplug plugins`)."},
    )
    ks: list[int] = attrs.field(
        factory=lambda: [3, 5, 10], validator=_positive_ks, metadata={"doc": "Cutoffs k for every metric."}
    )
    exclude_seen: bool = attrs.field(
        default=True, metadata={"doc": "Never recommend items in the case's history (they count as misses)."}
    )
    batch_size: int = attrs.field(
        default=1024, validator=attrs.validators.ge(1), metadata={"doc": "Cases scored at once."}
    )
    max_history: int = attrs.field(
        default=512,
        validator=attrs.validators.ge(1),
        metadata={"doc": "Recommenders see at most this many recent items of a history (every seen item is still "
                         "excluded), which bounds memory on very long histories."},
    )
    reference: str | None = attrs.field(
        default=None,
        metadata={"doc": "The recommender every other row is tested against (paired, case by case); default: the "
                         "first recommender of the spec."},
    )
    test: str = attrs.field(
        default="t-test",
        validator=attrs.validators.in_(TESTS),
        metadata={"doc": "Paired significance test: 't-test' (Student's paired t-test) or 'wilcoxon' (signed-rank); "
                         "p-values are Holm-Bonferroni adjusted across each protocol's table."},
    )
    alpha: float = attrs.field(
        default=0.05, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
        metadata={"doc": "Significance level for the marks in the tables (applied to the adjusted p-values)."},
    )  # fmt: skip
    confidence: float = attrs.field(
        default=0.95, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
        metadata={"doc": "Level of the bootstrap confidence intervals of per-case metrics."},
    )  # fmt: skip
    resamples: int = attrs.field(
        default=1000, validator=attrs.validators.ge(1),
        metadata={"doc": "Bootstrap resamples of the test cases (drawn from the experiment's seed)."},
    )  # fmt: skip


@torch.no_grad()
def rank_cases(
    recommender: Recommender,
    data: Interactions,
    cases: EvalCases,
    max_k: int,
    *,
    exclude_seen: bool = True,
    batch_size: int = 1024,
    max_history: int = 512,
    item_popularity: torch.Tensor | None = None,
    progress: str | None = None,
) -> RankedLists:
    """Recommend ``max_k`` items for every case (full ranking) and locate each target.

    Cases are ranked in batches of similar history length (then put back in order), so a batch is padded to
    little more than its own histories."""
    tops, ranks = [], []
    targets = torch.from_numpy(cases.targets(data))
    order = by_length(cases.target_pos - cases.history_start)
    bounds = range(0, len(cases), batch_size)
    quiet = progress is None or len(bounds) < 4 or not logging.getLogger("recplug").isEnabledFor(logging.INFO)
    for lo in tqdm(bounds, desc=progress, leave=False, disable=True if quiet else None):  # None: on a terminal
        index = order[lo : lo + batch_size]
        users = torch.from_numpy(cases.users[index])
        start, end = cases.history_start[index], cases.target_pos[index]
        histories = gather_histories(data, start, end, min(int((end - start).max(initial=1)) or 1, max_history))
        seen = seen_mask(data, cases.seen_start[index], end) if exclude_seen else None
        top, _ = recommender.recommend(users, histories, max_k, exclude_items=seen, exclude_history=False)
        top = top.cpu()
        found = top == targets[index, None]
        ranks.append(torch.where(found.any(1), found.int().argmax(1), max_k))
        tops.append(top)
    popularity = item_popularity if item_popularity is not None else torch.zeros(data.n_items, dtype=torch.float64)
    back = torch.from_numpy(np.argsort(order))
    return RankedLists(
        top_items=torch.cat(tops)[back] if tops else torch.zeros(0, max_k, dtype=torch.int64),
        target_rank=torch.cat(ranks)[back] if ranks else torch.zeros(0, dtype=torch.int64),
        targets=targets,
        n_items=data.n_items,
        item_popularity=popularity,
        item_info=data.item_info,
    )


def by_length(lengths: np.ndarray) -> np.ndarray:
    """An order of rows by length (stable): batches taken in it hold histories of similar length."""
    return np.argsort(lengths, kind="stable")


def seen_mask(data: Interactions, start: np.ndarray, end: np.ndarray) -> torch.Tensor:
    """Boolean ``[len(start), n_items]``: the items at positions ``start[i]:end[i]`` of each row.

    Built from flat indices, so memory follows the total history length, not the longest history.
    """
    lengths = (end - start).astype(np.int64)
    rows = np.repeat(np.arange(len(start)), lengths)
    positions = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(start, lengths)
    mask = torch.zeros(len(start), data.n_items, dtype=torch.bool)
    mask[torch.from_numpy(rows), torch.from_numpy(data.items[positions].astype(np.int64))] = True
    return mask


def compute_metrics(ranked: RankedLists, metrics: dict[str, Metric], ks: list[int]) -> dict[str, dict[int, float]]:
    """``{metric: {k: value}}`` for every metric and cutoff."""
    return {name: {k: metric.compute(ranked, k) for k in ks} for name, metric in metrics.items()}


def evaluate(
    recommender: Recommender,
    data: Interactions,
    cases: EvalCases,
    metrics: dict[str, Metric],
    options: EvaluationOptions,
    item_popularity: torch.Tensor | None = None,
    progress: str | None = None,
) -> dict[str, dict[int, float]]:
    """Rank every case and compute every metric at every k of ``options``."""
    ranked = rank_cases(
        recommender,
        data,
        cases,
        max(options.ks),
        exclude_seen=options.exclude_seen,
        batch_size=options.batch_size,
        max_history=options.max_history,
        item_popularity=item_popularity,
        progress=progress,
    )
    return compute_metrics(ranked, metrics, options.ks)


def training_popularity(data: Interactions, visible: np.ndarray) -> torch.Tensor:
    """Interaction count of each item among the visible (training) interactions."""
    return torch.from_numpy(np.bincount(data.items[visible], minlength=data.n_items).astype(np.float64))


def resolve_metrics(names: list[str], registry, path: str = "evaluation.metrics") -> dict[str, Metric]:
    """Instantiate the named metric plugins (with default options)."""
    known = [c.name for c in registry.of_kind("metric")]
    metrics = {}
    for i, name in enumerate(names):
        if name not in known:
            raise SpecError(unknown_name_message("metric", name, known), where=f"{path}[{i}]")
        component = registry.get("metric", name)
        metrics[name] = component.cls(component.options_cls())
    return metrics
