"""The command line, end to end in subprocesses, as a user runs it (core: the test kit's plugins only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import TESTKIT_ENV, run_cli, to_toml, toy_spec, write_spec


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    data = toy_spec("tiny", seed=3, registry=tmp_path / "registry", training={"epochs": 1})
    data["recommenders"]["counts-again"] = {"use": "counts"}
    return write_spec(tmp_path / "spec.toml", to_toml(data))


def test_run_writes_results_and_prints_tables(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("run", str(spec), "--out", str(out), env=TESTKIT_ENV)
    assert result.returncode == 0, result.stderr
    assert "### holdout" in result.stdout and "| counts-again |" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert len(results["rows"]) == 3 * 1 * 2  # recommenders x metrics x ks
    protocol = results["protocols"]["holdout"]
    assert protocol["candidates"] == "all items (full ranking)" and protocol["seen_items_excluded"] is True
    assert protocol["evaluated_on"] == "test cases" and protocol["ks"] == [1, 5] and protocol["test_cases"] == 30
    assert results["data"]["interactions"] > 0 and len(results["data"]["fingerprint_sha256"]) == 64
    assert results["seed"] == 3 and results["registered"] == ["tiny-counts:1", "tiny-bigram:1", "tiny-counts-again:1"]
    resolved = json.loads((out / "spec.json").read_text())
    assert resolved["recommenders"]["counts-again"]["use"] == "counts"
    assert (out / "results.md").read_text().count("| counts | 5 |") == 1


def test_set_overrides_spec_values(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("run", str(spec), "--out", str(out), "--set", "evaluation.ks=[2]", "--set", "experiment.seed=9",
                     env=TESTKIT_ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert {r["k"] for r in results["rows"]} == {2} and results["seed"] == 9


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("recommenders.bigram.dimm=3", "recommenders.bigram.dimm: unknown key; did you mean 'dim'?"),
        ("experiment.seed=abc", "experiment.seed: expected an integer, got string 'abc'"),
        ("recommenders.bigran.dim=3", "recommenders.bigran: unknown recommender 'bigran'; did you mean 'bigram'?"),
        ("recommenders.bigram.training.epochs=0", "recommenders.bigram.training.epochs: 'epochs' must be >= 1"),
        ("evaluation.metrics=['hitz']", "evaluation.metrics[0]: unknown metric 'hitz'; did you mean 'hits'?"),
        ("experiment.device=cuda:7", "experiment.device: device 'cuda:7' requested but"),
    ],
)
def test_user_errors_exit_2_with_one_message(spec: Path, tmp_path: Path, override: str, expected: str) -> None:
    result = run_cli("run", str(spec), "--out", str(tmp_path / "run"), "--set", override, env=TESTKIT_ENV)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("recplug: error: ")]) == 1
    assert not (tmp_path / "run").exists()  # a run that cannot start leaves nothing behind


def test_toml_syntax_error_exits_2(tmp_path: Path) -> None:
    bad = write_spec(tmp_path / "bad.toml", "[experiment\nname = 1\n")
    result = run_cli("run", str(bad), env=TESTKIT_ENV)
    assert result.returncode == 2 and "invalid TOML" in result.stderr and "line 1" in result.stderr


def test_help_teaches() -> None:
    top = run_cli("--help")
    assert top.returncode == 0 and "run" in top.stdout and "plugins" in top.stdout
    run = run_cli("run", "--help")
    assert "--set KEY.PATH=VALUE" in run.stdout and "examples:" in run.stdout and "--resume" in run.stdout


def test_plugins_lists_every_kind() -> None:
    result = run_cli("plugins", env=TESTKIT_ENV)
    assert result.returncode == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["KIND", "NAME", "DISTRIBUTION", "VERSION", "DESCRIPTION"]
    names = {tuple(row.split()[:4]) for row in rows}
    assert names == {(kind, name, "recplug-testkit", "1.0.0") for kind, name in [
        ("dataset", "toy"), ("splitter", "holdout"), ("model", "bigram"), ("baseline", "counts"), ("metric", "hits")]}
    listed = json.loads(run_cli("plugins", "--json", env=TESTKIT_ENV).stdout)
    assert len(listed["components"]) == 5 and listed["failures"] == []


def test_examples_are_listed_and_copied_out(tmp_path: Path) -> None:
    listed = run_cli("examples")
    assert listed.returncode == 0 and "popularity.toml" in listed.stdout and "ml1m-loo-fast.toml" in listed.stdout
    copied = run_cli("examples", "popularity", "--out", str(tmp_path))
    assert copied.returncode == 0 and (tmp_path / "popularity.toml").read_text().startswith("# Popularity baselines")
    again = run_cli("examples", "popularity", "--out", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr  # never overwrites a user's edited copy
    unknown = run_cli("examples", "popularty")
    assert unknown.returncode == 2 and "did you mean 'popularity.toml'" in unknown.stderr
