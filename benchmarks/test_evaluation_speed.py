"""Full-ranking evaluation (scores, exclusion, top-k, metrics) against the obvious alternative: a per-user loop
with sklearn.metrics.ndcg_score. Both run on the same cases in one session; the ratio and the NDCG agreement are
asserted on every run (CI included). ``RECPLUG_BENCH_CASES=6040`` times every ML-1M test user."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from recplug._components import RunContext
from recplug._evaluation import EvaluationOptions, evaluate, resolve_metrics
from recplug._split import gather_histories
from recplug.api import get_plugin_manager
from recplug_movielens import MovieLens, MovieLensOptions
from recplug_splits import LeaveOneOut, LeaveOneOutOptions
from recplug_transformer import Transformer, TransformerOptions

pytestmark = pytest.mark.realdata

MIN_SPEEDUP = 20.0
CASES = int(os.environ.get("RECPLUG_BENCH_CASES", "600"))
_measured: dict[str, float] = {}


@pytest.fixture(scope="module")
def setup(real_ml1m: Path):
    torch.manual_seed(0)
    data = MovieLens(MovieLensOptions(data_dir=str(real_ml1m))).load(RunContext())
    split = LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())
    model = Transformer(TransformerOptions())  # the default model: the seed's sizes
    model.prepare(data)
    model.module.eval()
    return data, split.test.subset(np.arange(min(CASES, len(split.test)))), model


@pytest.mark.benchmark(group="evaluation")
def test_recplug_full_ranking_evaluation(benchmark, setup, plugins) -> None:
    data, cases, model = setup
    metrics = resolve_metrics(["mrr", "map", "ndcg", "hit_rate"], plugins)
    options = EvaluationOptions(ks=[3, 5, 10], batch_size=2048)
    values = benchmark.pedantic(evaluate, args=(model, data, cases, metrics, options), rounds=5, warmup_rounds=1)
    _measured["seconds"], _measured["ndcg@10"] = benchmark.stats.stats.min, values["ndcg"][10]
    print(f"\nrecplug: {len(cases)} users evaluated in {benchmark.stats.stats.min:.3f}s")


@pytest.mark.benchmark(group="evaluation")
def test_per_user_loop_with_sklearn(benchmark, setup) -> None:
    data, cases, model = setup
    if not _measured:  # run alone: measure recplug's side here
        metrics = {"ndcg": get_plugin_manager().get("metric", "ndcg").cls(None)}
        times = []
        for _ in range(4):
            started = time.perf_counter()
            values = evaluate(model, data, cases, metrics, EvaluationOptions(ks=[10], batch_size=2048))
            times.append(time.perf_counter() - started)
        _measured["seconds"], _measured["ndcg@10"] = min(times[1:]), values["ndcg"][10]

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

    ndcg = benchmark.pedantic(loop, rounds=1)
    speedup = benchmark.stats.stats.min / _measured["seconds"]
    benchmark.extra_info["speedup"] = speedup
    print(f"\nper-user sklearn loop {benchmark.stats.stats.min:.2f}s: recplug is {speedup:.0f}x faster")
    assert ndcg == pytest.approx(_measured["ndcg@10"], abs=1e-9)  # the same number, computed independently
    assert speedup >= MIN_SPEEDUP
