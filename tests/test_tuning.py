"""``recplug tune``: the [tune] table is validated up front, trials are scored on validation only, processes share
one study and finish exactly the requested trials, an interrupted search resumes, the best is tested once and
registered with its study."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, TESTKIT_ENV, run_cli, to_toml, toy_spec, write_spec
from recplug._spec import read_toml  # noqa: E402

optuna = pytest.importorskip("optuna", reason="recplug[tune] is not installed (CI installs it)")

SPACE = {"dim": {"choice": [4, 8, 16]}, "training.lr": {"log_uniform": [0.005, 0.2]}}


def tune_spec(tmp_path: Path, trials: int = 5, epochs: int = 4, users: int = 30, **tune: object) -> dict:
    spec = toy_spec("toytune", registry=tmp_path / "registry", training={"epochs": epochs}, toy={"users": users})
    spec["tune"] = {"trials": trials, "startup_trials": 2, "warmup_epochs": 1, **tune,
                    "space": {"recommenders.bigram": SPACE}}  # fmt: skip
    return spec


def finished(folder: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="toytune", storage=f"sqlite:///{folder / 'study.db'}")
    return [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]


def test_a_search_tests_registers_and_reports_only_its_best(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "tune.toml", to_toml(tune_spec(tmp_path, trials=6)))
    out = tmp_path / "search"
    result = run_cli("tune", str(spec), "--out", str(out), env=TESTKIT_ENV)
    assert result.returncode == 0, result.stderr
    trials = finished(out)
    assert len(trials) == 6
    assert trials[0].params == {"dim": 8, "training.lr": 0.05}  # trial 0: the spec's own configuration
    assert all(t.user_attrs["curve"] and len(t.user_attrs["curve"]) <= 4 for t in trials)  # per-epoch validation
    summary = json.loads((out / "summary.json").read_text())
    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert summary["trial"] == best.number and summary["params"] == best.params
    assert summary["validation"] == {"ndcg@10": best.value}
    assert f"best: trial {best.number}" in result.stdout and "test (once): hits@1" in result.stdout

    # the best configuration as a runnable spec without [tune], and its one test evaluation in best-trial-N/
    best_spec = read_toml(out / "best.toml")
    assert "tune" not in best_spec
    assert best_spec["recommenders"]["bigram"]["dim"] == best.params["dim"]
    assert best_spec["recommenders"]["bigram"]["training"]["lr"] == best.params["training.lr"]
    results = json.loads((out / f"best-trial-{best.number}" / "results.json").read_text())
    assert results["tuning"]["trial"] == best.number
    assert {r["recommender"] for r in results["rows"]} == {"counts", "bigram"}

    # the registered model records its study; the baseline beside it records none
    registry = str(tmp_path / "registry")
    entry = json.loads(run_cli("models", "--registry", registry, "show", "toytune-bigram", "--json", env=TESTKIT_ENV).stdout)
    assert entry["tuning"]["params"] == best.params and entry["tuning"]["storage"].endswith("study.db")
    assert entry["options"]["dim"] == best.params["dim"] and entry["training"]["lr"] == best.params["training.lr"]
    card = run_cli("models", "--registry", registry, "show", "toytune-bigram", env=TESTKIT_ENV).stdout
    assert f"tuned     trial {best.number} of study 'toytune' (validation ndcg@10 {best.value:.4f}; " in card
    counts = json.loads(run_cli("models", "--registry", registry, "show", "toytune-counts", "--json", env=TESTKIT_ENV).stdout)
    assert "tuning" not in counts

    again = run_cli("tune", "--resume", str(out), env=TESTKIT_ENV)  # a finished search: nothing is trained again
    assert again.returncode == 0 and "already tested and registered" in again.stderr
    assert [r["version"] for r in json.loads(run_cli("models", "--registry", registry, "list", "--json",
                                                     env=TESTKIT_ENV).stdout) if r["name"] == "toytune-bigram"] == [1]  # fmt: skip

    page = (out / "tune.html").read_text()
    assert f"Best: trial {best.number}" in page and page.count("<tr>") == 1 + 6
    images = [part.split('"', 1)[0] for part in page.split('src="data:image/png;base64,')[1:]]
    assert len(images) == 3  # history, per-epoch curves, parameter importance
    from PIL import Image

    for data in images:
        image = Image.open(io.BytesIO(base64.b64decode(data))).convert("L")
        assert image.size == (800, 360) and len(image.getcolors(maxcolors=100_000)) > 20  # a drawn plot, not blank


def test_two_processes_share_one_study_and_finish_exactly_the_trials(tmp_path: Path) -> None:
    from recplug._plugin_manager import get_plugin_manager
    from recplug._tuning import TuneRun, parse_tune_spec

    raw = tune_spec(tmp_path, trials=7, epochs=3, users=300, pruner="none")
    os.environ.update(TESTKIT_ENV)
    try:
        run = TuneRun.create(parse_tune_spec(raw, get_plugin_manager()), tmp_path / "search", None, raw)
    finally:
        os.environ.pop("RECPLUG_PLUGINS")
    command = [sys.executable, "-m", "recplug", "tune", "--resume", str(run.folder), "--no-final"]
    env = {**os.environ, **TESTKIT_ENV}
    workers = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [w.communicate(timeout=300)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errors
    trials = finished(run.folder)
    assert len(trials) == 7  # exactly: claiming a trial is serialised by a lock beside the database
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran trials
    assert all("ran 0 trial" not in e for e in errors)


def test_jobs_start_helper_processes_on_the_same_study(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "tune.toml", to_toml(tune_spec(tmp_path, trials=5, epochs=2)))
    result = run_cli("tune", str(spec), "--out", str(tmp_path / "search"), "--jobs", "2", "--no-final", env=TESTKIT_ENV)
    assert result.returncode == 0, result.stderr
    assert len(finished(tmp_path / "search")) == 5
    assert not list((tmp_path / "search").glob("best*")) and not (tmp_path / "registry").exists()


def test_sigterm_leaves_a_study_that_resume_continues(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "tune.toml", to_toml(tune_spec(tmp_path, trials=3, epochs=30, users=200, pruner="none")))
    out = tmp_path / "search"
    env = {**os.environ, **TESTKIT_ENV, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "recplug", "tune", str(spec), "--out", str(out), "--no-final"],
                               env=env, stderr=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:  # wait until trial 0 is training
        if "epoch 2/30  train" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert f"continue it with: recplug tune --resume {out.resolve()}" in rest and "Traceback" not in rest
    study = optuna.load_study(study_name="toytune", storage=f"sqlite:///{out / 'study.db'}")
    interrupted, queued = study.get_trials()
    assert (interrupted.state.name, queued.state.name) == ("FAIL", "WAITING")  # queued again, same parameters
    assert queued.system_attrs["fixed_params"] == interrupted.params == {"dim": 8, "training.lr": 0.05}

    resumed = run_cli("tune", "--resume", str(out), "--no-final", env=TESTKIT_ENV)
    assert resumed.returncode == 0, resumed.stderr
    trials = finished(out)
    assert len(trials) == 3
    assert trials[0].params == interrupted.params and trials[0].user_attrs["retry_of"] == interrupted.number


BAD_SPACES = [
    ({"trails": 3}, "tune.trails", "did you mean 'trials'"),
    ({"space": {"recommenders.bigram": {"training.lr": {"uniform": [0.1, 0.01]}}}}, "training.lr.uniform", "is empty"),
    ({"space": {"recommenders.bigram": {"training.lr": {"log_uniform": [0.0, 0.1]}}}}, "training.lr.log_uniform",
     "above zero"),
    ({"space": {"recommenders.bigram": {"dim": {"choice": []}}}}, "dim.choice", "non-empty list"),
    ({"space": {"recommenders.bigram": {"dim": {"normal": [1, 2]}}}}, "dim.normal", "unknown key"),
    ({"space": {"recommenders.bigram": {"dim": {"uniform": [2.0, 8.0]}}}}, "dim", "does not fit"),
    ({"space": {"recommenders.bigram": {"dims": {"choice": [4, 8]}}}}, "dims", "did you mean 'dim'"),
    ({"space": {"recommenders.bigram": {"training.epochs": {"int": [0, 3]}}}}, "training.epochs", "does not fit"),
    ({"space": {"recommenders.bigrm": {"dim": {"choice": [4]}}}}, 'tune.space."recommenders.bigrm"', "recommenders.bigram"),
    ({"space": {}}, "tune.space", "expected a search space"),
    ({"space": {"recommenders.bigram": {"dim": {"int": [2, 9], "step": 2}}}}, "dim.step", "does not divide"),
]


@pytest.mark.parametrize(("tune", "where", "message"), BAD_SPACES)
def test_a_bad_tune_table_is_one_error_before_any_work(tmp_path: Path, tune: dict, where: str, message: str) -> None:
    spec = tune_spec(tmp_path)
    spec["tune"] = {"trials": 3, "space": {"recommenders.bigram": SPACE}, **tune}
    result = run_cli("tune", str(write_spec(tmp_path / "t.toml", to_toml(spec))), "--out", str(tmp_path / "o"),
                     env=TESTKIT_ENV)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("recplug: error: ") and where in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()


def test_without_the_extra_tune_says_how_to_install_it(tmp_path: Path) -> None:
    code = "import sys; sys.modules['optuna'] = None; from recplug.cli import main; sys.exit(main(['tune', 'x.toml']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "recplug: error: tune: recplug tune needs Optuna and matplotlib: pip install 'recplug[tune]'"
