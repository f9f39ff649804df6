"""The model registry: register, list, alias, reload, refuse damaged entries (core: the test kit's plugins)."""

from __future__ import annotations

import json
import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TESTKIT_ENV, run_cli, toy_spec
from recplug import load_model
from recplug._errors import RecplugError
from recplug._model_registry import FORMAT_VERSION, ModelRegistry, RegistryError, _write_entry
from recplug._runner import run_experiment
from recplug._spec import parse_spec
from recplug._split import gather_histories


@pytest.fixture
def trained(tmp_path: Path, toy_plugins):
    """A run (test kit: toy data, holdout split) whose bigram model was registered as tiny-bigram:1."""
    spec = parse_spec(toy_spec("tiny", seed=2, registry=tmp_path / "registry"), toy_plugins)
    result = run_experiment(spec, toy_plugins, run_dir=tmp_path / "run")
    return result, tmp_path / "registry"


def test_run_registers_models_and_baselines(trained) -> None:
    result, root = trained
    assert result.results["registered"] == ["tiny-counts:1", "tiny-bigram:1"]
    rows = ModelRegistry(root).list_versions()
    assert [(r["name"], r["version"], r["plugin"]) for r in rows] == [("tiny-bigram", 1, "bigram"),
                                                                     ("tiny-counts", 1, "counts")]  # fmt: skip
    baseline = ModelRegistry(root).load("tiny-counts")  # a registered baseline serves like a model
    counts = result.fitted[0].recommender.counts.clone()
    counts[0] = -1  # raw id 5 is item token 0: in the history, so never recommended
    expected = [int(result.data.item_ids[t]) for t in torch.topk(counts, 3).indices]
    assert [r["item_id"] for r in baseline.recommend(history=[5], k=3)] == expected
    entry = ModelRegistry(root).show("tiny-bigram")
    assert entry["plugin"] == {"kind": "model", "name": "bigram", "distribution": "recplug-testkit", "version": "1.0.0"}
    assert entry["options"] == {"dim": 8} and entry["training"]["epochs"] == 3
    assert entry["spec"]["recommenders"]["bigram"]["use"] == "bigram"
    assert entry["protocol"]["splitter"] == "holdout" and entry["data"]["fingerprint_sha256"]
    assert set(entry["files"]) == {"weights.pt", "vocab.npz", "info.json"}
    assert {"recplug", "torch", "python"} <= set(entry["versions"])
    assert set(entry["metrics"]) == {"hits"}


def test_reloaded_model_recommends_exactly_like_the_trained_one(trained) -> None:
    result, root = trained
    fitted = next(f for f in result.fitted if f.spec.kind == "model")
    served = load_model("tiny-bigram:1", registry=str(root))
    data, cases = result.data, fitted.split.test
    users = torch.from_numpy(cases.users)
    histories = gather_histories(data, cases.history_start, cases.target_pos)
    expected, _ = fitted.recommender.recommend(users, histories, 10)
    got, _ = served.recommender.recommend(users, histories, 10)
    assert torch.equal(expected, got)
    # Raw ids in, raw ids with metadata out.
    uid = int(data.user_ids[0])
    recs = served.recommend(user_id=uid, k=5)
    assert len(recs) == 5 and set(recs[0]) == {"item_id", "score", "title", "tags", "color", "year"}
    assert isinstance(recs[0]["year"], int) and isinstance(recs[0]["tags"], list)  # typed metadata, JSON-ready
    assert not {r["item_id"] for r in recs} & set(served.history(uid))
    cold = served.recommend(history=served.history(uid)[:3], k=3)  # a new user: history only
    assert len(cold) == 3
    with pytest.raises(RecplugError, match="unknown item id"):
        served.recommend(history=[999_999])
    with pytest.raises(RecplugError, match="unknown user id"):
        served.recommend(user_id=10**6)


def test_versions_aliases_and_unknown_references(trained) -> None:
    result, root = trained
    models = ModelRegistry(root)
    models.register("tiny-bigram", next(f.recommender for f in result.fitted if f.spec.kind == "model"),
                    provenance={"plugin": {"kind": "model", "name": "bigram", "distribution": "recplug-testkit", "version": "1.0.0"}, "options": json.loads(json.dumps(models.show("tiny-bigram")["options"])), "training": None},
                    spec={}, data=result.data, metrics={}, protocol={})  # fmt: skip
    assert models.resolve("tiny-bigram") == ("tiny-bigram", 2)
    models.alias("tiny-bigram:1", "production")
    assert models.resolve("tiny-bigram@production") == ("tiny-bigram", 1)
    with pytest.raises(RegistryError, match=r"no alias 'staging' \(aliases: production -> 1\)"):
        models.resolve("tiny-bigram@staging")
    with pytest.raises(RegistryError, match=r"no version 7 \(versions: 1, 2\)"):
        models.resolve("tiny-bigram:7")
    with pytest.raises(RegistryError, match=r"no model named 'nope' .* \(models: tiny-bigram, tiny-counts\)"):
        models.resolve("nope")
    models.delete("tiny-bigram:1")
    assert [r["version"] for r in models.list_versions() if r["name"] == "tiny-bigram"] == [2]
    with pytest.raises(RegistryError, match="aliases: none"):
        models.resolve("tiny-bigram@production")


def test_tampered_truncated_and_pickled_files_are_refused(trained) -> None:
    _, root = trained
    folder = root / "tiny-bigram" / "1"
    weights = folder / "weights.pt"
    original = weights.read_bytes()
    weights.write_bytes(original[: len(original) // 2])
    with pytest.raises(RegistryError, match="weights.pt: file was modified or truncated"):
        load_model("tiny-bigram", registry=str(root))
    weights.write_bytes(original)

    # A weights file carrying a pickle payload, with a matching checksum: refused by weights_only loading.
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    weights.write_bytes(pickle.dumps({"x": Exploit()}))
    entry = json.loads((folder / "entry.json").read_text())
    from recplug._paths import file_sha256 as _sha256

    entry["files"]["weights.pt"] = _sha256(weights)
    _write_entry(folder / "entry.json", entry)
    with pytest.raises(RegistryError, match="weights refused"):
        load_model("tiny-bigram", registry=str(root))

    text = (folder / "entry.json").read_text()
    (folder / "entry.json").write_text(text.replace('"dim": 8', '"dim": 9'))
    with pytest.raises(RegistryError, match="entry.json was modified"):
        load_model("tiny-bigram", registry=str(root))


def test_format_versions(trained) -> None:
    _, root = trained
    path = root / "tiny-bigram" / "1" / "entry.json"
    entry = json.loads(path.read_text())
    entry["format_version"] = FORMAT_VERSION + 1
    entry["versions"]["recplug"] = "9.0.0"
    _write_entry(path, entry)
    with pytest.raises(RegistryError, match="upgrade recplug to at least 9.0.0"):
        load_model("tiny-bigram", registry=str(root))
    entry["format_version"] = FORMAT_VERSION
    entry["versions"]["recplug"] = "0.0.1"  # an older recplug with the same format: loads
    _write_entry(path, entry)
    assert load_model("tiny-bigram", registry=str(root)).recommend(user_id=1, k=2)


def _register_many(root: str, name: str, count: int, queue) -> None:
    from recplug_testkit import Counts

    from recplug._components import NoOptions, RunContext
    from recplug._data import build_interactions
    from recplug._split import TrainView

    data = build_interactions([0, 0, 1], [0, 1, 0], [1, 2, 3], [1, 2, 3], fingerprint="x")
    model = Counts(NoOptions())
    visible = np.ones(3, dtype=bool)
    model.fit(TrainView(data, visible, visible), None, RunContext())
    queue.put([
        ModelRegistry(root).register(name, model, provenance={"plugin": {"kind": "baseline", "name": "counts",
                                     "distribution": "recplug-testkit", "version": "1.0.0"}, "options": {}, "training": None}, spec={}, data=data, metrics={}, protocol={})
        for _ in range(count)
    ])  # fmt: skip


def test_concurrent_registrations_get_distinct_versions(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_register_many, args=(str(tmp_path), "pop", 5, queue)) for _ in range(3)]
    for w in workers:
        w.start()
    versions = sorted(v for _ in workers for v in queue.get(timeout=120))
    for w in workers:
        w.join()
    assert versions == list(range(1, 16))
    assert not [p for p in (tmp_path / "pop").iterdir() if p.name.startswith(".")]  # no staging left behind
    for v in versions:
        assert ModelRegistry(tmp_path).load(f"pop:{v}").recommend(user_id=0, k=1)


def test_cli_models_and_recommend(trained, tmp_path: Path) -> None:
    _, root = trained
    env = {"RECPLUG_REGISTRY": str(root), **TESTKIT_ENV}
    listed = run_cli("models", "list", env=env)
    assert listed.returncode == 0 and "tiny-bigram" in listed.stdout
    aliased = run_cli("models", "alias", "tiny-bigram:1", "production", env=env)
    assert aliased.returncode == 0 and "tiny-bigram@production -> tiny-bigram:1" in aliased.stdout
    shown = json.loads(run_cli("models", "show", "tiny-bigram@production", "--json", env=env).stdout)
    assert shown["aliases"] == ["production"]
    report = tmp_path / "report.html"
    rec = run_cli("recommend", "tiny-bigram@production", "--user", "3", "-k", "4", "--format", "json",
                  "--report", str(report), env=env)  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    payload = json.loads(rec.stdout)
    assert len(payload["recommendations"]) == 4 and payload["history"]
    assert "Recommended (4)" in report.read_text()
    cold = run_cli("recommend", "tiny-bigram", "--history", "5,15,25", "-k", "3", env=env)
    assert cold.returncode == 0 and "new user" in cold.stdout
    evaluated = run_cli("evaluate", "tiny-bigram@production", "--split", "holdout", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "### holdout" in evaluated.stdout and "| tiny-bigram:1 | 5 |" in evaluated.stdout
    missing = run_cli("recommend", "tiny-bigram@nope", "--user", "3", env=env)
    assert missing.returncode == 2 and "has no alias 'nope'" in missing.stderr and "Traceback" not in missing.stderr


def test_evaluate_writes_the_runs_protocol_record_and_results(trained, toy_plugins) -> None:
    """``recplug evaluate`` shares the runner's code: the same protocol record and the same values."""
    from recplug._runner import evaluate_registered

    result, root = trained
    served = ModelRegistry(root).load("tiny-bigram")
    evaluated = evaluate_registered(served, parse_spec(served.entry["spec"], toy_plugins), toy_plugins)
    assert evaluated["protocols"] == result.results["protocols"] == {"holdout": served.entry["protocol"]}
    ran = {(r["metric"], r["k"]): r["value"] for r in result.results["rows"] if r["recommender"] == "bigram"}
    assert {(r["metric"], r["k"]): r["value"] for r in evaluated["rows"]} == ran


def test_a_missing_plugin_is_one_clear_error(trained) -> None:
    _, root = trained
    result = run_cli("recommend", "tiny-bigram", "--user", "3", env={"RECPLUG_REGISTRY": str(root),
                                                                     "RECPLUG_PLUGINS": "splits"})  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "needs the model plugin 'bigram' from recplug-testkit 1.0.0, which is not installed" in result.stderr


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_bulk_export_of_every_users_top_k(trained, tmp_path: Path, suffix: str) -> None:
    """``recommend --all-users``: every user's top-k in one vectorised pass, equal to asking user by user."""
    import pandas as pd

    _, root = trained
    out = tmp_path / f"recs{suffix}"
    env = {"RECPLUG_REGISTRY": str(root), **TESTKIT_ENV}
    result = run_cli("recommend", "tiny-bigram", "--all-users", "-k", "4", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    served = ModelRegistry(root).load("tiny-bigram")
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score"]
    assert len(frame) == 4 * served.vocab.n_users and frame["rank"].tolist()[:4] == [1, 2, 3, 4]
    for user in (1, 7, 30):
        one_by_one = served.recommend(user_id=user, k=4)
        rows = frame[frame.user_id == user].sort_values("rank")
        assert rows.item_id.tolist() == [r["item_id"] for r in one_by_one]
        assert rows.score.to_numpy() == pytest.approx([r["score"] for r in one_by_one], abs=1e-5)
        assert not set(rows.item_id) & set(served.history(user))  # seen items are never recommended
    bad = run_cli("recommend", "tiny-bigram", "--all-users", "--out", str(tmp_path / "recs.txt"), env=env)
    assert bad.returncode == 2 and "--all-users needs --out FILE.csv or FILE.parquet" in bad.stderr
