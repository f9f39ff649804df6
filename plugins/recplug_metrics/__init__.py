"""Ranking metrics for next-item prediction (one relevant item per case).

With ``r`` the 0-based position of the target in the top-k list (a miss when absent):

- ``hit_rate@k`` = 1 if r < k                   (equals recall@k with one relevant item)
- ``mrr@k``      = 1 / (r + 1) if r < k, else 0
- ``map@k``      = AP@k = (1 / min(k, #relevant)) * sum_i precision@i * rel_i; with one relevant
  item this is 1 / (r + 1) if r < k — the same value as MRR@k
- ``ndcg@k``     = DCG@k / IDCG@k = 1 / log2(r + 2) if r < k (IDCG = 1)

Each is averaged over evaluation cases.
"""

from __future__ import annotations

import torch

from recplug import hookimpl
from recplug.evaluation import RankedLists
from recplug.interfaces import Metric


class HitRate(Metric):
    """Fraction of cases whose target is in the top k (= recall@k with one relevant item)."""

    def compute(self, ranked: RankedLists, k: int) -> float:
        return (ranked.target_rank < k).double().mean().item()


class MRR(Metric):
    """Mean reciprocal rank of the target, 0 when it is outside the top k."""

    def compute(self, ranked: RankedLists, k: int) -> float:
        rank = ranked.target_rank.double()
        return torch.where(rank < k, 1.0 / (rank + 1.0), 0.0).mean().item()


class MAP(MRR):
    """Mean average precision at k; with one relevant item it equals MRR@k (see module docs)."""


class NDCG(Metric):
    """Normalised discounted cumulative gain at k with one relevant item: 1/log2(rank+2) on a hit."""

    def compute(self, ranked: RankedLists, k: int) -> float:
        rank = ranked.target_rank.double()
        return torch.where(rank < k, 1.0 / torch.log2(rank + 2.0), 0.0).mean().item()


@hookimpl
def register_components(register) -> None:
    register.metric("hit_rate", HitRate)
    register.metric("mrr", MRR)
    register.metric("map", MAP)
    register.metric("ndcg", NDCG)
