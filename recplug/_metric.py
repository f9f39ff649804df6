"""What a metric sees and computes: the ranked lists of every evaluation case, reduced to one number at k."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch

from ._data import FeatureTable


@attrs.frozen(eq=False)
class RankedLists:
    """What a recommender recommended for every evaluation case, and where the target landed."""

    top_items: torch.Tensor
    """int64 ``[cases, max_k]``: recommended item tokens, best first."""
    target_rank: torch.Tensor
    """int64 ``[cases]``: 0-based position of the target in ``top_items``; ``max_k`` when absent."""
    targets: torch.Tensor
    """int64 ``[cases]``: the true next item of each case."""
    n_items: int
    item_popularity: torch.Tensor
    """float64 ``[n_items]``: how often each item occurs in the training data."""
    item_info: FeatureTable | None = None
    """The dataset's item metadata (a row per item token), when it has some."""

    def hits(self, k: int) -> torch.Tensor:
        """float64 ``[cases]``: 1 where the target is in the top ``k``."""
        return (self.target_rank < k).double()

    def reciprocal_ranks(self, k: int) -> torch.Tensor:
        """float64 ``[cases]``: 1 / (rank + 1) on a hit at ``k``, else 0."""
        return self.hits(k) / (self.target_rank.double() + 1.0)

    def ndcgs(self, k: int) -> torch.Tensor:
        """float64 ``[cases]``: 1 / log2(rank + 2) on a hit at ``k`` (one relevant item, IDCG = 1), else 0."""
        return self.hits(k) / torch.log2(self.target_rank.double() + 2.0)


class Metric:
    """A ranking metric at cutoff ``k`` over the recommended lists of all evaluation cases.

    A metric that is a mean over cases (hit rate, NDCG, MRR) implements :meth:`per_case`; recplug then derives
    :meth:`compute`, and gives the metric confidence intervals and paired significance tests. A metric of the
    lists as a whole (coverage) implements :meth:`compute` alone.
    """

    higher_is_better: ClassVar[bool] = True

    def __init__(self, options: Any) -> None:
        self.options = options

    def per_case(self, ranked: RankedLists, k: int) -> torch.Tensor | None:
        """float64 ``[cases]``: each case's value at cutoff ``k``; None for a metric that is not a mean over cases."""
        return None

    def compute(self, ranked: RankedLists, k: int) -> float:
        """The metric's value at cutoff ``k`` (by default the mean of :meth:`per_case`)."""
        values = self.per_case(ranked, k)
        if values is None:
            raise NotImplementedError(f"{type(self).__name__} implements neither per_case nor compute")
        return values.mean().item()
