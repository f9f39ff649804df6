"""Sharing the CPU: two recplug trainings at once on one machine each keep a fair share of their solo speed.

Each run is a separate ``python -m recplug run`` of the leave-one-out probe (``training_probe.py``) with default
thread settings. Asserted: with two at once, each trains at least 40 % of the samples/s of one alone, measured in
the same test (on two cores a fair share is 50 %; threads that spin while waiting for each other make it far less).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from training_probe import finish, samples_per_second, start

pytestmark = pytest.mark.realdata

STEPS = 40
MIN_SHARE = 0.4


@pytest.mark.benchmark(group="cpu-sharing")
def test_two_trainings_at_once_each_keep_a_fair_share(benchmark, real_ml1m: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RECPLUG_DATA_DIR", str(real_ml1m.parent))
    solo = samples_per_second("leave-one-out", STEPS, tmp_path / "solo")

    def two_at_once() -> list[float]:
        runs = [start("leave-one-out", STEPS, tmp_path / name) for name in ("first", "second")]
        return [finish(run) for run in runs]

    shared = benchmark.pedantic(two_at_once, rounds=1, iterations=1)
    print(f"\nalone {solo:.0f} samples/s; two at once {shared[0]:.0f} and {shared[1]:.0f} samples/s "
          f"({shared[0] / solo:.0%} and {shared[1] / solo:.0%} of alone)")  # fmt: skip
    benchmark.extra_info.update({"solo": solo, "shared": shared})
    assert min(shared) >= MIN_SHARE * solo, f"{shared} vs {solo:.0f} alone"
