"""Ranking metrics for next-item prediction (one relevant item per case).

With ``r`` the 0-based position of the target in the top-k list (a miss when absent):

- ``hit_rate@k`` = 1 if r < k                   (equals recall@k with one relevant item)
- ``mrr@k``      = 1 / (r + 1) if r < k, else 0
- ``map@k``      = AP@k = (1 / min(k, #relevant)) * sum_i precision@i * rel_i; with one relevant
  item this is 1 / (r + 1) if r < k — the same value as MRR@k
- ``ndcg@k``     = DCG@k / IDCG@k = 1 / log2(r + 2) if r < k (IDCG = 1)

Each is averaged over evaluation cases.

Beyond accuracy, over the top-k lists (popularity = occurrences in the training data):

- ``coverage@k``        = share of the catalogue (items that occur in training) recommended to anyone
- ``novelty@k``         = mean self-information -log2(pop(i) / sum(pop)) of recommended items (Laplace-smoothed)
- ``diversity@k``       = mean over lists of the average pairwise distance 1 - Jaccard(features_i, features_j) of the
  items' values in the item metadata's first multi-valued column (genres, tags), else its first categorical one
- ``popularity_bias@k`` = mean popularity of recommended items / mean popularity of catalogue items (1 = neutral)
"""

from __future__ import annotations

import torch

from recplug.api import Metric, RankedLists, hookimpl


class HitRate(Metric):
    """Fraction of cases whose target is in the top k (= recall@k with one relevant item)."""

    def per_case(self, ranked: RankedLists, k: int) -> torch.Tensor:
        return ranked.hits(k)


class MRR(Metric):
    """Mean reciprocal rank of the target, 0 when it is outside the top k."""

    def per_case(self, ranked: RankedLists, k: int) -> torch.Tensor:
        return ranked.reciprocal_ranks(k)


class MAP(MRR):
    """Mean average precision at k; with one relevant item it equals MRR@k (see module docs)."""


class NDCG(Metric):
    """Normalised discounted cumulative gain at k with one relevant item: 1/log2(rank+2) on a hit."""

    def per_case(self, ranked: RankedLists, k: int) -> torch.Tensor:
        return ranked.ndcgs(k)


class Coverage(Metric):
    """Catalogue coverage: share of the items occurring in training that appear in some top-k list."""

    def compute(self, ranked: RankedLists, k: int) -> float:
        catalogue = ranked.item_popularity > 0
        shown = torch.zeros(ranked.n_items, dtype=torch.bool)
        shown[ranked.top_items[:, :k].reshape(-1)] = True
        return ((shown & catalogue).sum() / catalogue.sum().clamp(min=1)).item()


class Novelty(Metric):
    """Mean self-information (bits) of recommended items: rarer items are more novel."""

    def compute(self, ranked: RankedLists, k: int) -> float:
        counts = ranked.item_popularity + 1.0
        information = -torch.log2(counts / counts.sum())
        return information[ranked.top_items[:, :k]].mean().item()


class Diversity(Metric):
    """Intra-list diversity by category (genres, tags): mean pairwise 1 - Jaccard of the recommended items'."""

    def compute(self, ranked: RankedLists, k: int) -> float:
        info = ranked.item_info
        columns = (info.columns("multi") + info.columns("categorical")) if info is not None else []
        if info is None or not columns or k < 2:
            return float("nan")
        matrix, _ = info.multi_hot(columns[0])
        genres = torch.from_numpy(matrix)[ranked.top_items[:, :k]].double()  # [N, k, G]
        shared = genres @ genres.transpose(1, 2)
        sizes = genres.sum(2)
        union = sizes[:, :, None] + sizes[:, None, :] - shared
        distance = 1 - torch.where(union > 0, shared / union.clamp(min=1), 1.0)
        pairs = k * (k - 1)
        return (distance.sum((1, 2)) / pairs).mean().item()


class PopularityBias(Metric):
    """Mean popularity of recommended items relative to the catalogue's mean (1 = no bias; lower is better)."""

    higher_is_better = False

    def compute(self, ranked: RankedLists, k: int) -> float:
        catalogue = ranked.item_popularity[ranked.item_popularity > 0]
        return (ranked.item_popularity[ranked.top_items[:, :k]].mean() / catalogue.mean()).item()


@hookimpl
def register_components(register) -> None:
    register.metric("hit_rate", HitRate)
    register.metric("mrr", MRR)
    register.metric("map", MAP)
    register.metric("ndcg", NDCG)
    register.metric("coverage", Coverage)
    register.metric("novelty", Novelty)
    register.metric("diversity", Diversity)
    register.metric("popularity_bias", PopularityBias)
