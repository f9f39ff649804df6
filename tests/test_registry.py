"""The model registry: register, list, alias, reload in a fresh process, refuse damaged entries."""

from __future__ import annotations

import json
import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import run_cli
from recplug import load_model
from recplug._errors import RecplugError
from recplug._model_registry import FORMAT_VERSION, ModelRegistry, RegistryError, _write_entry
from recplug._runner import run_experiment
from recplug._spec import parse_spec
from recplug._split import gather_histories


def spec_data(data_dir: Path, registry_dir: Path) -> dict:
    return {
        "experiment": {"name": "tiny", "seed": 2, "device": "cpu", "registry": str(registry_dir)},
        "dataset": {"movielens": {"data_dir": str(data_dir)}},
        "recommenders": {
            "popularity": {},
            "transformer": {
                "embedding_dim": 16, "num_layers": 1, "num_heads": 2, "user_embedding_dim": 8,
                "training": {"epochs": 1, "batch_size": 128},
            },
        },
    }  # fmt: skip


@pytest.fixture
def trained(ml1m_dir: Path, tmp_path: Path, registry):
    """A run whose transformer was registered as tiny-transformer:1."""
    spec = parse_spec(spec_data(ml1m_dir, tmp_path / "registry"), registry)
    result = run_experiment(spec, registry, run_dir=tmp_path / "run")
    return result, tmp_path / "registry"


def test_run_registers_trained_models(trained) -> None:
    result, root = trained
    assert result.results["registered"] == ["tiny-transformer:1"]  # baselines are not registered
    rows = ModelRegistry(root).list()
    assert [(r["name"], r["version"], r["plugin"]) for r in rows] == [("tiny-transformer", 1, "transformer")]
    entry = ModelRegistry(root).show("tiny-transformer")
    assert entry["plugin"]["distribution"] == "recplug"
    assert entry["options"]["embedding_dim"] == 16 and entry["training"]["epochs"] == 1
    assert entry["spec"]["recommenders"]["transformer"]["use"] == "transformer"
    assert entry["protocol"]["splitter"] == "leave_one_out" and entry["data"]["fingerprint_sha256"]
    assert set(entry["files"]) == {"weights.pt", "vocab.npz", "info.json"}
    assert {"recplug", "torch", "python"} <= set(entry["versions"])
    assert "ndcg" in entry["metrics"]


def test_reloaded_model_recommends_exactly_like_the_trained_one(trained) -> None:
    result, root = trained
    fitted = next(f for f in result.fitted if f.spec.kind == "model")
    served = load_model("tiny-transformer:1", registry=str(root))
    data, cases = result.data, fitted.split.test
    users = torch.from_numpy(cases.users)
    histories = gather_histories(data, cases.history_start, cases.target_pos)
    expected, _ = fitted.recommender.recommend(users, histories, 10)
    got, _ = served.recommender.recommend(users, histories, 10)
    assert torch.equal(expected, got)
    # Raw ids in, raw ids with metadata out.
    uid = int(data.user_ids[0])
    recs = served.recommend(user_id=uid, k=5)
    assert len(recs) == 5 and {"item_id", "score", "title", "genres", "year"} <= set(recs[0])
    assert not {r["item_id"] for r in recs} & set(served.history(uid))
    cold = served.recommend(history=served.history(uid)[:3], k=3)  # a new user: history only
    assert len(cold) == 3
    with pytest.raises(RecplugError, match="unknown item id"):
        served.recommend(history=[999_999])
    with pytest.raises(RecplugError, match="unknown user id"):
        served.recommend(user_id=10**6)


def test_versions_aliases_and_unknown_references(trained, ml1m_dir: Path, registry) -> None:
    result, root = trained
    models = ModelRegistry(root)
    models.register("tiny-transformer", next(f.recommender for f in result.fitted if f.spec.kind == "model"),
                    plugin={"kind": "model", "name": "transformer", "distribution": "recplug", "version": "0"},
                    options=json.loads(json.dumps(models.show("tiny-transformer")["options"])), training=None,
                    spec={}, data=result.data, metrics={}, protocol={})  # fmt: skip
    assert models.resolve("tiny-transformer") == ("tiny-transformer", 2)
    models.alias("tiny-transformer:1", "production")
    assert models.resolve("tiny-transformer@production") == ("tiny-transformer", 1)
    with pytest.raises(RegistryError, match=r"no alias 'staging' \(aliases: production -> 1\)"):
        models.resolve("tiny-transformer@staging")
    with pytest.raises(RegistryError, match=r"no version 7 \(versions: 1, 2\)"):
        models.resolve("tiny-transformer:7")
    with pytest.raises(RegistryError, match=r"no model named 'nope' .* \(models: tiny-transformer\)"):
        models.resolve("nope")
    models.delete("tiny-transformer:1")
    assert [r["version"] for r in models.list()] == [2]
    with pytest.raises(RegistryError, match="aliases: none"):
        models.resolve("tiny-transformer@production")


def test_tampered_truncated_and_pickled_files_are_refused(trained) -> None:
    _, root = trained
    folder = root / "tiny-transformer" / "1"
    weights = folder / "weights.pt"
    original = weights.read_bytes()
    weights.write_bytes(original[: len(original) // 2])
    with pytest.raises(RegistryError, match="weights.pt: file was modified or truncated"):
        load_model("tiny-transformer", registry=str(root))
    weights.write_bytes(original)

    # A weights file carrying a pickle payload, with a matching checksum: refused by weights_only loading.
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    weights.write_bytes(pickle.dumps({"x": Exploit()}))
    entry = json.loads((folder / "entry.json").read_text())
    from recplug._model_registry import _sha256

    entry["files"]["weights.pt"] = _sha256(weights)
    _write_entry(folder / "entry.json", entry)
    with pytest.raises(RegistryError, match="weights refused"):
        load_model("tiny-transformer", registry=str(root))

    text = (folder / "entry.json").read_text()
    (folder / "entry.json").write_text(text.replace('"embedding_dim": 16', '"embedding_dim": 17'))
    with pytest.raises(RegistryError, match="entry.json was modified"):
        load_model("tiny-transformer", registry=str(root))


def test_format_versions(trained) -> None:
    _, root = trained
    path = root / "tiny-transformer" / "1" / "entry.json"
    entry = json.loads(path.read_text())
    entry["format_version"] = FORMAT_VERSION + 1
    entry["versions"]["recplug"] = "9.0.0"
    _write_entry(path, entry)
    with pytest.raises(RegistryError, match="upgrade recplug to at least 9.0.0"):
        load_model("tiny-transformer", registry=str(root))
    entry["format_version"] = FORMAT_VERSION
    entry["versions"]["recplug"] = "0.0.1"  # an older recplug with the same format: loads
    _write_entry(path, entry)
    assert load_model("tiny-transformer", registry=str(root)).recommend(user_id=1, k=2)


def _register_many(root: str, name: str, count: int, queue) -> None:
    from recplug._components import RunContext
    from recplug._data import build_interactions
    from recplug._split import TrainView
    from recplug_popularity import Popularity, PopularityOptions

    data = build_interactions([0, 0, 1], [0, 1, 0], [1, 2, 3], [1, 2, 3], fingerprint="x")
    model = Popularity(PopularityOptions())
    visible = np.ones(3, dtype=bool)
    model.fit(TrainView(data, visible, visible), None, RunContext())
    queue.put([
        ModelRegistry(root).register(name, model, plugin={"kind": "baseline", "name": "popularity",
                                     "distribution": "recplug", "version": "0"},
                                     options={}, training=None, spec={}, data=data, metrics={}, protocol={})
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
    env = {"RECPLUG_REGISTRY": str(root)}
    listed = run_cli("models", "list", env=env)
    assert listed.returncode == 0 and "tiny-transformer" in listed.stdout
    aliased = run_cli("models", "alias", "tiny-transformer:1", "production", env=env)
    assert aliased.returncode == 0 and "tiny-transformer@production -> tiny-transformer:1" in aliased.stdout
    shown = json.loads(run_cli("models", "show", "tiny-transformer@production", env=env).stdout)
    assert shown["aliases"] == ["production"]
    report = tmp_path / "report.html"
    rec = run_cli("recommend", "tiny-transformer@production", "--user", "3", "-k", "4", "--format", "json",
                  "--report", str(report), env=env)  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    payload = json.loads(rec.stdout)
    assert len(payload["recommendations"]) == 4 and payload["history"]
    assert "Recommended (4)" in report.read_text()
    cold = run_cli("recommend", "tiny-transformer", "--history", "1,3,5", "-k", "3", env=env)
    assert cold.returncode == 0 and "new user" in cold.stdout
    evaluated = run_cli("evaluate", "tiny-transformer@production", "--split", "seed_windows", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "### seed_windows" in evaluated.stdout and "| tiny-transformer:1 | 10 |" in evaluated.stdout
    missing = run_cli("recommend", "tiny-transformer@nope", "--user", "3", env=env)
    assert missing.returncode == 2 and "has no alias 'nope'" in missing.stderr and "Traceback" not in missing.stderr


def test_feature_only_user_tower_serves_a_brand_new_user(ml1m_dir: Path, tmp_path: Path, registry) -> None:
    """A user tower built from gender/age/occupation scores a new user from those features alone."""
    data = spec_data(ml1m_dir, tmp_path / "registry")
    data["recommenders"] = {"transformer": {
        "embedding_dim": 16, "num_layers": 1, "num_heads": 2, "user_embedding_dim": 8, "user_ids": False,
        "user_features": ["gender", "age", "occupation"], "training": {"epochs": 1, "batch_size": 128},
    }}  # fmt: skip
    run_experiment(parse_spec(data, registry), registry, run_dir=tmp_path / "run")
    served = load_model("tiny-transformer", registry=tmp_path / "registry")
    known = int(served.vocab.user_ids[3])
    profile = served.vocab.user_info.iloc[3]
    features = {"gender": profile["gender"], "age": int(profile["age"]), "occupation": int(profile["occupation"])}
    history = served.history(known)
    as_known = served.recommend(user_id=known, k=10)
    as_new = served.recommend(history=history, user_features=features, k=10)
    assert [r["item_id"] for r in as_new] == [r["item_id"] for r in as_known]  # same features, same history
    other = {**features, "gender": "M" if features["gender"] == "F" else "F"}
    scores_other = [r["score"] for r in served.recommend(history=history, user_features=other, k=10)]
    assert scores_other != [r["score"] for r in as_new]  # the features matter
    with pytest.raises(RecplugError, match="unknown age value"):
        served.recommend(history=history, user_features={**features, "age": 7})
    with pytest.raises(RecplugError, match="needs the user feature"):
        served.recommend(history=history, user_features={"gender": "F"})
    ok = run_cli("recommend", "tiny-transformer", "--registry", str(tmp_path / "registry"), "--format", "json",
                 "--history", ",".join(map(str, history)), *[f"--user-feature={k}={v}" for k, v in features.items()])  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert [r["item_id"] for r in json.loads(ok.stdout)["recommendations"]] == [r["item_id"] for r in as_known]
    bad = run_cli("recommend", "tiny-transformer", "--registry", str(tmp_path / "registry"), "--history", "1",
                  "--user-feature", "gender")  # fmt: skip
    assert bad.returncode == 2 and "--user-feature takes NAME=VALUE" in bad.stderr and "Traceback" not in bad.stderr
