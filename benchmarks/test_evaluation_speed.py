"""Full-ranking evaluation of all 6,040 ML-1M users (scores, exclusion, top-k, metrics) with the default model,
against the obvious alternative: a per-user loop with sklearn.metrics.ndcg_score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from recplug._components import RunContext
from recplug._evaluation import EvaluationOptions, evaluate, resolve_metrics
from recplug._split import gather_histories
from recplug_movielens import MovieLens, MovieLensOptions
from recplug_splits import LeaveOneOut, LeaveOneOutOptions
from recplug_transformer import Transformer, TransformerOptions

_min_seconds: dict[str, float] = {}


@pytest.fixture(scope="module")
def setup(real_ml1m: Path):
    torch.manual_seed(0)
    data = MovieLens(MovieLensOptions(data_dir=str(real_ml1m))).load(RunContext())
    split = LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())
    model = Transformer(TransformerOptions())  # the default model: the seed's sizes
    model.prepare(data)
    model.module.eval()
    return data, split, model


@pytest.mark.benchmark(group="evaluation-6040-users")
def test_recplug_full_ranking_evaluation(benchmark, setup, plugins) -> None:
    data, split, model = setup
    metrics = resolve_metrics(["mrr", "map", "ndcg", "hit_rate"], plugins)
    options = EvaluationOptions(ks=[3, 5, 10], batch_size=2048)
    values = benchmark.pedantic(evaluate, args=(model, data, split.test, metrics, options), rounds=5, warmup_rounds=1)
    assert 0.0 <= values["ndcg"][10] <= 1.0
    if benchmark.enabled:
        _min_seconds["recplug"] = benchmark.stats.stats.min
        print(f"\nrecplug: 6,040 users evaluated in {benchmark.stats.stats.min:.3f}s (target <= 1s)")
        assert benchmark.stats.stats.min <= 1.0


@pytest.mark.benchmark(group="evaluation-6040-users")
def test_per_user_loop_with_sklearn(benchmark, setup) -> None:
    data, split, model = setup
    if not benchmark.enabled:
        pytest.skip("the slow alternative only runs when benchmarks are enabled")
    cases = split.test

    @torch.no_grad()
    def loop() -> float:
        total = 0.0
        for i in range(len(cases)):
            history = gather_histories(data, cases.history_start[i : i + 1], cases.target_pos[i : i + 1])
            scores = model.score(torch.tensor(cases.users[i : i + 1]), history)[0].numpy().copy()
            scores[history[0][history[0] < data.n_items].numpy()] = -np.inf
            truth = np.zeros((1, data.n_items))
            truth[0, data.items[cases.target_pos[i]]] = 1
            total += ndcg_score(truth, np.nan_to_num(scores[None], neginf=-1e9), k=10)
        return total / len(cases)

    benchmark.pedantic(loop, rounds=1)
    if "recplug" in _min_seconds:
        ratio = benchmark.stats.stats.min / _min_seconds["recplug"]
        benchmark.extra_info["speedup"] = ratio
        print(f"\nper-user sklearn loop {benchmark.stats.stats.min:.2f}s: recplug is {ratio:.0f}x faster")
