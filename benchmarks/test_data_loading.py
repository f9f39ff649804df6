"""ML-1M load + tokenise + time-ordered sequences, against pandas' python-engine read of ratings.dat alone.

Run: ``python -m pytest benchmarks --benchmark-enable`` (CI runs them once each, as a smoke test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recplug._components import RunContext
from recplug_movielens import MovieLens, MovieLensOptions

MAX_RATIO = 1 / 20
_min_seconds: dict[str, float] = {}


@pytest.mark.benchmark(group="ml1m-load")
def test_recplug_load_tokenise_sequences(benchmark, real_ml1m: Path) -> None:
    dataset = MovieLens(MovieLensOptions(data_dir=str(real_ml1m), cache=False))  # parse every time
    data = benchmark.pedantic(dataset.load, args=(RunContext(),), rounds=10, warmup_rounds=1)
    assert data.n_interactions == 1_000_209 and data.n_users == 6_040
    if benchmark.enabled:
        _min_seconds["recplug"] = benchmark.stats.stats.min


@pytest.mark.benchmark(group="ml1m-load")
def test_pandas_python_engine_read_only(benchmark, real_ml1m: Path) -> None:
    read = lambda: pd.read_csv(real_ml1m / "ratings.dat", sep="::", engine="python", header=None)  # noqa: E731
    frame = benchmark.pedantic(read, rounds=3)
    assert len(frame) == 1_000_209
    if benchmark.enabled and "recplug" in _min_seconds:
        ratio = _min_seconds["recplug"] / benchmark.stats.stats.min
        benchmark.extra_info["recplug_over_pandas"] = ratio
        print(f"\nrecplug load {_min_seconds['recplug']:.3f}s vs pandas python engine {benchmark.stats.stats.min:.3f}s: "
              f"ratio {ratio:.4f} (target <= {MAX_RATIO})")  # fmt: skip
        assert ratio <= MAX_RATIO


@pytest.mark.benchmark(group="ml1m-load-cached")
def test_second_load_from_the_fingerprint_cache(benchmark, real_ml1m: Path) -> None:
    dataset = MovieLens(MovieLensOptions(data_dir=str(real_ml1m)))
    first = dataset.load(RunContext())  # parses and fills the cache
    data = benchmark.pedantic(dataset.load, args=(RunContext(),), rounds=10)
    assert data.fingerprint == first.fingerprint and np.array_equal(data.items, first.items)
    assert isinstance(data.items, np.memmap)
    if benchmark.enabled:
        print(f"\ncached ML-1M load: {benchmark.stats.stats.min:.4f}s (target <= 0.1s)")
        assert benchmark.stats.stats.min <= 0.1
