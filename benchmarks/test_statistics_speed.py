"""The analysis of a whole results table: bootstrap intervals of every per-case row and the paired tests.

The shape of the ML-1M ablation: 9 recommenders x 4 per-case metrics x 2 cutoffs = 72 rows over 6,040 test cases
(hits, and ranks of the kind full ranking gives), 1,000 resamples. Asserted: at most 1 s for the intervals and the
Holm-adjusted t-tests together.
"""

from __future__ import annotations

import numpy as np
import pytest

from recplug._statistics import bootstrap_intervals, holm, paired_p_values

CASES, ROWS, RESAMPLES = 6040, 72, 1000
MAX_SECONDS = 1.0


def per_case_table() -> np.ndarray:
    rng = np.random.default_rng(0)
    ranks = rng.geometric(rng.uniform(0.01, 0.05, size=(ROWS, 1)), size=(ROWS, CASES)) - 1  # 0-based target ranks
    return np.where(ranks < 10, 1 / np.log2(ranks + 2.0), 0.0)


def analyse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    intervals = bootstrap_intervals(values, RESAMPLES, 0.95, seed=42)
    references = values[np.arange(8, ROWS) % 8]  # the first recommender's 8 rows: the same metric and k as each row
    return intervals, holm(paired_p_values(values[8:], references))


@pytest.mark.benchmark(group="statistics")
def test_intervals_and_tests_of_a_whole_table(benchmark) -> None:
    values = per_case_table()
    intervals, adjusted = benchmark.pedantic(analyse, args=(values,), rounds=5, warmup_rounds=1)
    means = values.mean(axis=1)
    assert np.all((intervals[:, 0] <= means) & (means <= intervals[:, 1]))
    assert adjusted.shape == (ROWS - 8,) and np.all((adjusted >= 0) & (adjusted <= 1))
    best = benchmark.stats.stats.min
    print(f"\n{ROWS} rows x {CASES} cases x {RESAMPLES} resamples: {best:.3f} s (best of 5)")
    assert best <= MAX_SECONDS
