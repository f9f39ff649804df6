"""The command line, end to end in subprocesses, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli, write_ml1m, write_spec


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    data = write_ml1m(tmp_path / "ml-1m")
    return write_spec(tmp_path / "spec.toml", f"""
[experiment]
name = "tiny"
seed = 3

[dataset.movielens]
data_dir = "{data}"

[splits.seed_windows]
[splits.leave_one_out]

[recommenders.popularity]
[recommenders.most-popular]
use = "popularity"
method = "count"

[evaluation]
ks = [3, 5, 10]
""")


def test_run_writes_results_and_prints_tables(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("run", str(spec), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "### seed_windows" in result.stdout and "### leave_one_out" in result.stdout
    assert "| most-popular |" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert len(results["rows"]) == 2 * 2 * 4 * 3  # splits x recommenders x metrics x ks
    loo = results["protocols"]["leave_one_out"]
    assert loo["candidates"] == "all items (full ranking)" and loo["seen_items_excluded"] is True
    assert results["data"]["interactions"] > 0 and len(results["data"]["fingerprint_sha256"]) == 64
    assert results["seed"] == 3
    resolved = json.loads((out / "spec.json").read_text())
    assert resolved["recommenders"]["most-popular"]["use"] == "popularity"
    assert (out / "results.md").read_text().count("| popularity | 10 |") == 2  # one row per split and k


def test_set_overrides_spec_values(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("run", str(spec), "--out", str(out), "--set", "evaluation.ks=[2]", "--set", "experiment.seed=9")
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert {r["k"] for r in results["rows"]} == {2} and results["seed"] == 9


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("recommenders.popularity.methd=count", "recommenders.popularity.methd: unknown key; did you mean 'method'?"),
        ("experiment.seed=abc", "experiment.seed: expected an integer, got string 'abc'"),
        ("recommenders.populartiy.method=count", "recommenders.populartiy: unknown recommender 'populartiy'; did you mean 'popularity'?"),
        ("dataset.movielens.data_dir=/nonexistent/place", "data_dir '/nonexistent/place' does not exist"),
        ("experiment.device=cuda:7", "experiment.device: device 'cuda:7' requested but"),
    ],
)
def test_user_errors_exit_2_with_one_message(spec: Path, tmp_path: Path, override: str, expected: str) -> None:
    result = run_cli("run", str(spec), "--out", str(tmp_path / "run"), "--set", override)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("recplug: error: ")]) == 1
    assert not (tmp_path / "run").exists()  # a run that cannot start leaves nothing behind


def test_malformed_data_exits_2_naming_file_and_line(spec: Path, tmp_path: Path) -> None:
    ratings = tmp_path / "ml-1m" / "ratings.dat"
    ratings.write_text(ratings.read_text() + "12::oops::3::978300000\n")
    lines = len(ratings.read_text().splitlines())
    result = run_cli("run", str(spec), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert f"{ratings}:{lines}: malformed rating line: MovieID is not a number: 'oops'" in result.stderr
    assert "Traceback" not in result.stderr


def test_toml_syntax_error_exits_2(tmp_path: Path) -> None:
    bad = write_spec(tmp_path / "bad.toml", "[experiment\nname = 1\n")
    result = run_cli("run", str(bad))
    assert result.returncode == 2 and "invalid TOML" in result.stderr and "line 1" in result.stderr


def test_help_teaches() -> None:
    top = run_cli("--help")
    assert top.returncode == 0 and "run" in top.stdout and "plugins" in top.stdout
    run = run_cli("run", "--help")
    assert "--set KEY.PATH=VALUE" in run.stdout and "examples:" in run.stdout and "--resume" in run.stdout


def test_plugins_lists_every_kind() -> None:
    result = run_cli("plugins")
    assert result.returncode == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["KIND", "NAME", "DISTRIBUTION", "VERSION", "DESCRIPTION"]
    names = {tuple(row.split()[:3]) for row in rows}
    for kind, name in [("dataset", "movielens"), ("splitter", "leave_one_out"), ("splitter", "seed_windows"),
                       ("model", "transformer"), ("baseline", "popularity"), ("metric", "ndcg")]:  # fmt: skip
        assert (kind, name, "recplug") in names
