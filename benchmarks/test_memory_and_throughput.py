"""Window views stay small; training and serving throughput of the default model."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from recplug._components import RunContext
from recplug._examples import SequenceChunks, WindowExamples
from recplug._model_registry import ModelRegistry
from recplug_movielens import MovieLens, MovieLensOptions
from recplug_splits import LeaveOneOut, LeaveOneOutOptions
from recplug_transformer import Transformer, TransformerOptions

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def ml1m(real_ml1m: Path):
    data = MovieLens(MovieLensOptions(data_dir=str(real_ml1m), cache=False)).load(RunContext())
    return data, LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())


def flat_bytes(data) -> int:
    return sum(a.nbytes for a in (data.offsets, data.items, data.ratings, data.timestamps))


MAX_PEAK = {"windows": 1.0, "chunks": 0.5}
"""Peak memory of building and iterating every context-200 example, as a share of the flat interaction arrays
(docs/results.rst quotes the measured figures)."""


@pytest.mark.parametrize("source", ["windows", "chunks"])
def test_context_200_window_views_peak_memory(ml1m, source: str) -> None:
    """Examples are views: every training example with context 200 is built and iterated within a bounded share
    of the flat arrays (never a copy of the windows)."""
    data, split = ml1m
    tracemalloc.start()
    examples = WindowExamples(data, split.train.target_positions, 200) if source == "windows" else SequenceChunks(split.train, 200)
    for lo in range(0, len(examples), 512):
        examples.batch(np.arange(lo, min(lo + 512, len(examples))))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"\n{source}: {len(examples)} examples of context 200, peak {peak / 2**20:.1f} MiB "
          f"vs flat arrays {flat_bytes(data) / 2**20:.1f} MiB")  # fmt: skip
    assert peak <= MAX_PEAK[source] * flat_bytes(data)


@pytest.mark.benchmark(group="throughput")
def test_training_throughput_seed_config(benchmark, ml1m) -> None:
    data, split = ml1m
    torch.manual_seed(0)
    model = Transformer(TransformerOptions())
    model.prepare(data)
    examples = model.training_examples(split.train)
    optimizer = torch.optim.Adam(model.module.parameters(), lr=1e-3)
    batches = [examples.batch(np.arange(i * 512, (i + 1) * 512)) for i in range(20)]

    def train_20_steps() -> None:
        for batch in batches:
            optimizer.zero_grad()
            model.loss(batch).backward()
            optimizer.step()

    benchmark.pedantic(train_20_steps, rounds=3, warmup_rounds=1)
    if benchmark.enabled:
        rate = 20 * 512 / benchmark.stats.stats.min
        benchmark.extra_info["samples_per_s"] = rate
        print(f"\nseed configuration: {rate:.0f} training samples/s")


@pytest.mark.benchmark(group="throughput")
def test_serving_throughput_through_the_registry(benchmark, ml1m, tmp_path: Path) -> None:
    data, split = ml1m
    model = Transformer(TransformerOptions())
    model.prepare(data)
    registry = ModelRegistry(tmp_path)
    registry.register("bench", model, provenance={"plugin": {"kind": "model", "name": "transformer", "distribution": "recplug",
                      "version": "0"}, "options": {}, "training": None}, spec={}, data=data, metrics={}, protocol={})  # fmt: skip
    served = registry.load("bench")
    users = data.user_ids[:200].tolist()

    def recommend_200_users() -> None:
        for user in users:
            served.recommend(user_id=user, k=10)

    benchmark.pedantic(recommend_200_users, rounds=3, warmup_rounds=1)
    if benchmark.enabled:
        rate = 200 / benchmark.stats.stats.min
        benchmark.extra_info["users_per_s"] = rate
        print(f"\nserving through the registry: {rate:.0f} users/s (one request per user)")
