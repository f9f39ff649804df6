from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import ndcg_score

from recplug._evaluation import resolve_metrics
from recplug.api import FeatureTable, RankedLists


def ranked_from(ranks: list[int], max_k: int = 10) -> RankedLists:
    rank = torch.tensor(ranks, dtype=torch.int64)
    return RankedLists(
        top_items=torch.zeros(len(ranks), max_k, dtype=torch.int64),
        target_rank=rank,
        targets=torch.zeros(len(ranks), dtype=torch.int64),
        n_items=100,
        item_popularity=torch.ones(100, dtype=torch.float64),
    )


@pytest.fixture
def metrics(plugins):
    return resolve_metrics(["mrr", "map", "ndcg", "hit_rate"], plugins)


def test_hand_computed_cases(metrics) -> None:
    ranked = ranked_from([0, 1, 2, 4, 10])  # 10 == miss (absent from the top-10 list)
    assert metrics["hit_rate"].compute(ranked, 3) == pytest.approx(3 / 5)
    assert metrics["hit_rate"].compute(ranked, 5) == pytest.approx(4 / 5)
    assert metrics["mrr"].compute(ranked, 3) == pytest.approx((1 + 1 / 2 + 1 / 3) / 5)
    assert metrics["mrr"].compute(ranked, 5) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 5) / 5)
    # MAP@5 from the definition of average precision, not from MRR: AP@k = sum_i P@i * rel_i / min(k, #relevant)
    lists = [[int(i == r) for i in range(10)] for r in [0, 1, 2, 4, 10]]  # relevance by position, one relevant
    ap = [sum(sum(rel[: i + 1]) / (i + 1) * rel[i] for i in range(5)) / min(5, 1) for rel in lists]
    assert metrics["map"].compute(ranked, 5) == pytest.approx(sum(ap) / 5)
    assert sum(ap) / 5 == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 5) / 5)
    expected = (1 + 1 / math.log2(3) + 1 / math.log2(4)) / 5
    assert metrics["ndcg"].compute(ranked, 3) == pytest.approx(expected)
    assert metrics["ndcg"].compute(ranked_from([10, 10]), 10) == 0.0


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_ndcg_matches_sklearn_on_random_cases(metrics, k: int) -> None:
    rng = np.random.default_rng(k)
    n_cases, n_items = 200, 30
    scores = rng.normal(size=(n_cases, n_items))  # continuous scores: no ties
    targets = rng.integers(0, n_items, size=n_cases)
    relevance = np.zeros_like(scores)
    relevance[np.arange(n_cases), targets] = 1
    expected = np.mean([ndcg_score(relevance[i : i + 1], scores[i : i + 1], k=k) for i in range(n_cases)])
    order = np.argsort(-scores, axis=1)
    rank = np.argmax(order == targets[:, None], axis=1)
    rank = np.where(rank < 10, rank, 10)
    assert metrics["ndcg"].compute(ranked_from(rank.tolist()), k) == pytest.approx(expected, abs=1e-12)


def test_beyond_accuracy_metrics_hand_computed(plugins) -> None:
    m = resolve_metrics(["coverage", "novelty", "diversity", "popularity_bias"], plugins)
    popularity = torch.tensor([6.0, 2.0, 0.0, 0.0], dtype=torch.float64)  # items 2, 3 never occur in training
    genres = FeatureTable(pd.DataFrame({"genres": [["a"], ["a", "b"], ["b"], ["b"]]}), {"genres": "multi"})
    ranked = RankedLists(
        top_items=torch.tensor([[0, 1], [0, 2]]), target_rank=torch.tensor([2, 2]), targets=torch.tensor([3, 3]),
        n_items=4, item_popularity=popularity, item_info=genres,
    )
    assert m["coverage"].compute(ranked, 2) == pytest.approx(2 / 2)  # items 0 and 1 of the catalogue {0, 1}
    assert m["coverage"].compute(ranked, 1) == pytest.approx(1 / 2)
    info = lambda c: -math.log2((c + 1) / 12)  # noqa: E731  (Laplace-smoothed counts sum to 12)
    assert m["novelty"].compute(ranked, 2) == pytest.approx((2 * info(6) + info(2) + info(0)) / 4)
    # list 1: genres {a} vs {a, b}: 1 - 1/2; list 2: {a} vs {b}: 1 - 0
    assert m["diversity"].compute(ranked, 2) == pytest.approx((0.5 + 1.0) / 2)
    assert m["popularity_bias"].compute(ranked, 2) == pytest.approx(((6 + 2 + 6 + 0) / 4) / 4.0)
    assert not m["popularity_bias"].higher_is_better
