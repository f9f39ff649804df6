"""ML-1M load + tokenise + time-ordered sequences, against pandas' python-engine read of ratings.dat alone, and the
second load from the fingerprint cache against the first. Ratios measured in one run, asserted on every run."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recplug._components import RunContext
from recplug_movielens import MovieLens, MovieLensOptions

MAX_RATIO = 1 / 20  # recplug's whole load against pandas' python engine reading the file alone
MAX_CACHED_RATIO = 1 / 2  # the cached load against parsing
_min_seconds: dict[str, float] = {}


def recplug_parse_seconds(real_ml1m: Path) -> float:
    """The fastest uncached load, from test_recplug_load_tokenise_sequences or (run alone) measured here."""
    if "recplug" not in _min_seconds:
        dataset = MovieLens(MovieLensOptions(data_dir=str(real_ml1m), cache=False))
        times = []
        for _ in range(4):
            started = time.perf_counter()
            dataset.load(RunContext())
            times.append(time.perf_counter() - started)
        _min_seconds["recplug"] = min(times[1:])
    return _min_seconds["recplug"]

pytestmark = pytest.mark.realdata


@pytest.mark.benchmark(group="ml1m-load")
def test_recplug_load_tokenise_sequences(benchmark, real_ml1m: Path) -> None:
    dataset = MovieLens(MovieLensOptions(data_dir=str(real_ml1m), cache=False))  # parse every time
    data = benchmark.pedantic(dataset.load, args=(RunContext(),), rounds=10, warmup_rounds=1)
    assert data.n_interactions == 1_000_209 and data.n_users == 6_040
    _min_seconds["recplug"] = benchmark.stats.stats.min


@pytest.mark.benchmark(group="ml1m-load")
def test_pandas_python_engine_read_only(benchmark, real_ml1m: Path) -> None:
    """Each pandas round is preceded by recplug loads (untimed by the benchmark, timed here), so both sides of
    every round's ratio see the same machine: on a shared 2-core VM, seconds of stolen CPU otherwise land on one
    side only. The median of the per-round ratios is asserted."""
    dataset = MovieLens(MovieLensOptions(data_dir=str(real_ml1m), cache=False))
    recplug_seconds: list[float] = []

    def recplug_loads() -> None:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            dataset.load(RunContext())
            times.append(time.perf_counter() - started)
        recplug_seconds.append(min(times))

    read = lambda: pd.read_csv(real_ml1m / "ratings.dat", sep="::", engine="python", header=None)  # noqa: E731
    frame = benchmark.pedantic(read, setup=recplug_loads, rounds=5)
    assert len(frame) == 1_000_209
    ratios = sorted(r / p for r, p in zip(recplug_seconds, benchmark.stats.stats.data))
    ratio = ratios[len(ratios) // 2]
    benchmark.extra_info["recplug_over_pandas"] = ratio
    print(f"\nrecplug load {min(recplug_seconds):.3f}s vs pandas python engine {benchmark.stats.stats.min:.3f}s: "
          f"per-round ratios {', '.join(f'{r:.4f}' for r in ratios)}; median {ratio:.4f} (target <= {MAX_RATIO})")  # fmt: skip
    assert ratio <= MAX_RATIO


@pytest.mark.benchmark(group="ml1m-load-cached")
def test_second_load_from_the_fingerprint_cache(benchmark, real_ml1m: Path) -> None:
    dataset = MovieLens(MovieLensOptions(data_dir=str(real_ml1m)))
    first = dataset.load(RunContext())  # parses and fills the cache
    data = benchmark.pedantic(dataset.load, args=(RunContext(),), rounds=10)
    assert data.fingerprint == first.fingerprint and np.array_equal(data.items, first.items)
    assert isinstance(data.items, np.memmap)
    ratio = benchmark.stats.stats.min / recplug_parse_seconds(real_ml1m)
    print(f"\ncached ML-1M load: {benchmark.stats.stats.min:.4f}s, {ratio:.2f} of parsing (target <= {MAX_CACHED_RATIO})")
    assert ratio <= MAX_CACHED_RATIO
