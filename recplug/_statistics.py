"""Uncertainty and significance of per-case metrics: bootstrap intervals, paired tests, Holm's correction.

Every function takes per-case values as a float matrix ``[rows, cases]`` (a row per recommender x metric x k,
a column per evaluation case, the same cases in the same order in every row), so a whole results table is
analysed in a few matrix operations.
"""

from __future__ import annotations

import math

import numpy as np

TESTS = ("t-test", "wilcoxon")
"""Paired tests: Student's paired t-test (two-sided) and the Wilcoxon signed-rank test (two-sided)."""

_CHUNK = 4_000_000
"""Resample weights are drawn in chunks of at most this many numbers (memory stays ~32 MB for any case count)."""


def bootstrap_intervals(values: np.ndarray, resamples: int = 1000, confidence: float = 0.95,
                        seed: int = 0) -> np.ndarray:  # fmt: skip
    """Percentile bootstrap intervals ``[rows, 2]`` of each row's mean, resampling cases with replacement.

    All rows share the same resamples (so intervals of different recommenders are comparable), drawn from
    ``seed``. A resample is a vector of case counts, so the means of every row under every resample are one
    matrix product ``values @ counts.T``.
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    cases = values.shape[1]
    if cases == 0:
        return np.full((values.shape[0], 2), np.nan)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, min(resamples, _CHUNK // cases))
    means = []
    for done in range(0, resamples, per_chunk):
        n = min(per_chunk, resamples - done)
        draws = rng.integers(0, cases, size=(n, cases)) + (np.arange(n) * cases)[:, None]
        counts = np.bincount(draws.ravel(), minlength=n * cases).reshape(n, cases).astype(np.float64)
        means.append(values @ counts.T / cases)
    tail = (1 - confidence) / 2
    return np.quantile(np.concatenate(means, axis=1), [tail, 1 - tail], axis=1).T


def paired_p_values(values: np.ndarray, reference: np.ndarray, test: str = "t-test") -> np.ndarray:
    """Two-sided p-values ``[rows]`` of each row against ``reference`` (``[cases]``, or a row of its own for each
    row: ``[rows, cases]``), paired by case.

    Identical rows get p = 1; a constant non-zero difference gets p = 0 under the t-test.
    """
    from scipy import stats

    differences = np.atleast_2d(np.asarray(values, dtype=np.float64)) - np.asarray(reference, dtype=np.float64)
    n = differences.shape[1]
    if test == "t-test":
        mean = differences.mean(axis=1)
        spread = differences.std(axis=1, ddof=1) if n > 1 else np.zeros(len(differences))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = mean / (spread / math.sqrt(n))
        p = 2 * stats.t.sf(np.abs(t), df=max(n - 1, 1))
        return np.where(spread > 0, p, np.where(mean == 0, 1.0, 0.0))
    if test == "wilcoxon":
        return np.array([stats.wilcoxon(d).pvalue if np.any(d != 0) else 1.0 for d in differences])
    raise ValueError(f"unknown paired test {test!r}; choose one of {', '.join(TESTS)}")


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order; NaN stays NaN and is not counted as a test)."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted
