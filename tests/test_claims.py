"""The figures recplug advertises, measured on the real MovieLens-1M in CI: a regression here fails the build.

- the popularity tables of docs/results.rst under both protocols, pinned to 4 decimals (deterministic, seconds);
- a short, fixed-seed run of the leave-one-out transformer (examples/ml1m-loo-fast.toml, 2 epochs), inside a band
  chosen from measured runs: below it, the model, the training loop or the exclusion of seen items broke; above
  it, the split leaks the future.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recplug._runner import run_experiment
from recplug._spec import apply_overrides, parse_spec, read_toml

pytestmark = pytest.mark.realdata
REPO = Path(__file__).resolve().parents[1]

POPULARITY_TABLE = {  # (split, recommender, k): values of mrr, map, ndcg, hit_rate, coverage, novelty, diversity, popularity_bias
    ('seed_windows', 'popularity-seed', 3): (0.0042, 0.0042, 0.0048, 0.0068, 0.0019, 8.9151, 0.8050, 7.7071),
    ('seed_windows', 'popularity-seed', 5): (0.0053, 0.0053, 0.0068, 0.0117, 0.0024, 8.8292, 0.8423, 8.1926),
    ('seed_windows', 'popularity-seed', 10): (0.0066, 0.0066, 0.0101, 0.0219, 0.0041, 8.9845, 0.8432, 7.5938),
    ('seed_windows', 'most-popular', 3): (0.0063, 0.0063, 0.0073, 0.0101, 0.0019, 8.3306, 0.7719, 11.5202),
    ('seed_windows', 'most-popular', 5): (0.0075, 0.0075, 0.0095, 0.0154, 0.0024, 8.3927, 0.6233, 11.0445),
    ('seed_windows', 'most-popular', 10): (0.0091, 0.0091, 0.0135, 0.0280, 0.0041, 8.4846, 0.7143, 10.3695),
    ('leave_one_out', 'popularity-seed', 3): (0.0051, 0.0051, 0.0058, 0.0079, 0.0229, 9.0098, 0.8280, 7.4027),
    ('leave_one_out', 'popularity-seed', 5): (0.0061, 0.0061, 0.0075, 0.0121, 0.0316, 9.0535, 0.8490, 7.2926),
    ('leave_one_out', 'popularity-seed', 10): (0.0074, 0.0074, 0.0109, 0.0228, 0.0475, 9.1595, 0.8195, 6.8316),
    ('leave_one_out', 'most-popular', 3): (0.0084, 0.0084, 0.0094, 0.0121, 0.0254, 8.4673, 0.6677, 10.5939),
    ('leave_one_out', 'most-popular', 5): (0.0103, 0.0103, 0.0126, 0.0200, 0.0343, 8.5371, 0.6820, 10.1057),
    ('leave_one_out', 'most-popular', 10): (0.0124, 0.0124, 0.0180, 0.0369, 0.0537, 8.6421, 0.7494, 9.4232),
}
METRICS = ("mrr", "map", "ndcg", "hit_rate", "coverage", "novelty", "diversity", "popularity_bias")


def test_popularity_tables_are_pinned(real_ml1m: Path, plugins, tmp_path: Path) -> None:
    data = apply_overrides(read_toml(REPO / "examples" / "popularity.toml"), [f'dataset.movielens.data_dir="{real_ml1m}"'])
    result = run_experiment(parse_spec(data, plugins), plugins, run_dir=tmp_path / "run")
    measured: dict[tuple, dict[str, float]] = {}
    for row in result.results["rows"]:
        measured.setdefault((row["split"], row["recommender"], row["k"]), {})[row["metric"]] = row["value"]
    assert set(measured) == set(POPULARITY_TABLE)
    for key, expected in POPULARITY_TABLE.items():
        got = tuple(round(measured[key][m], 4) for m in METRICS)
        assert got == expected, f"{key}: {dict(zip(METRICS, got))} != {dict(zip(METRICS, expected))}"


PROTOCOL_TABLE = {  # most-popular under each protocol (docs/evaluation.rst): test cases, ndcg, hit_rate, mrr, coverage @10
    "leave_one_out": (6040, 0.0180, 0.0369, 0.0124, 0.0537),
    "last_n": (30200, 0.0203, 0.0410, 0.0141, 0.0530),
    "ratio": (197656, 0.0172, 0.0351, 0.0119, 0.0548),
    "temporal": (99992, 0.0203, 0.0408, 0.0142, 0.0538),
    "seed_windows": (99417, 0.0135, 0.0280, 0.0091, 0.0041),
}


def test_the_protocol_table_is_pinned(real_ml1m: Path, plugins, tmp_path: Path) -> None:
    from recplug._describe import describe

    data = apply_overrides(read_toml(REPO / "examples" / "ml1m-protocols.toml"), [f'dataset.movielens.data_dir="{real_ml1m}"'])
    spec = parse_spec(data, plugins)
    result = run_experiment(spec, plugins, run_dir=tmp_path / "run")
    measured = {split: [result.results["protocols"][split]["test_cases"]] for split in PROTOCOL_TABLE}
    for row in result.results["rows"]:
        measured[row["split"]].append(round(row["value"], 4))  # in the spec's metric order
    assert {split: tuple(values) for split, values in measured.items()} == PROTOCOL_TABLE
    leaks = {name: s["future_leak"]["share_of_test_cases"] for name, s in describe(spec, plugins)["splits"].items()}
    assert leaks["temporal"] == 0.0 and min(v for k, v in leaks.items() if k != "temporal") > 0.99


SHORT_RUN_BAND = {"ndcg@10": (0.055, 0.075), "hit_rate@10": (0.105, 0.140)}
"""examples/ml1m-loo-fast.toml for 2 epochs (seed 42) measured NDCG@10 0.0626, HR@10 0.1210 (2 min 20 s on the 2-core
CPU). The same run without the exclusion of seen items measured 0.0389 / 0.0816, an untrained model sits at the
popularity level (0.0180 / 0.0369): both fall below the band. A test item leaking into training lifts the model
above it."""


@pytest.mark.slow
def test_a_short_transformer_run_lands_in_its_band(real_ml1m: Path, plugins, tmp_path: Path) -> None:
    data = apply_overrides(read_toml(REPO / "examples" / "ml1m-loo-fast.toml"), [
        f'dataset.movielens.data_dir="{real_ml1m}"', "recommenders.transformer.training.epochs=2",
        'evaluation.metrics=["ndcg", "hit_rate"]', "experiment.register=false",
    ])  # fmt: skip
    result = run_experiment(parse_spec(data, plugins), plugins, run_dir=tmp_path / "run")
    got = {f"{r['metric']}@{r['k']}": r["value"] for r in result.results["rows"] if r["recommender"] == "transformer"}
    for name, (low, high) in SHORT_RUN_BAND.items():
        assert low <= got[name] <= high, f"{name} = {got[name]:.4f}, outside [{low}, {high}]"
