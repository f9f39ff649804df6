"""The example plugin, tested as its author would: installed next to recplug, used through the CLI and API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recplug import load_model
from recplug.api import RankedLists, get_plugin_manager

HERE = Path(__file__).resolve().parent


def write_data(folder: Path, n_users: int = 40, n_items: int = 30) -> Path:
    """ML-1M-format files where every user walks the catalogue in order: a learnable sequence."""
    folder.mkdir(parents=True)
    (folder / "movies.dat").write_text("".join(f"{i}::Movie {i} (2000)::Drama\n" for i in range(1, n_items + 1)))
    (folder / "users.dat").write_text("".join(f"{u}::F::25::1::00000\n" for u in range(1, n_users + 1)))
    rng = np.random.default_rng(0)
    lines = []
    for u in range(1, n_users + 1):
        start = int(rng.integers(1, n_items - 12))
        lines += [f"{u}::{m}::4::{1000 + t}\n" for t, m in enumerate(range(start, start + 12))]
    (folder / "ratings.dat").write_text("".join(lines))
    return folder


def test_plugin_is_registered_through_its_entry_point() -> None:
    registry = get_plugin_manager()
    model = registry.get("model", "youtube_dnn")
    assert model.distribution == "recplug-youtube-dnn" and model.version == "0.1.0"
    assert registry.get("metric", "precision").distribution == "recplug-youtube-dnn"


def test_precision_is_hits_over_k() -> None:
    ranked = RankedLists(torch.zeros(4, 10, dtype=torch.long), torch.tensor([0, 2, 5, 10]),
                         torch.zeros(4, dtype=torch.long), 10, torch.ones(10))  # fmt: skip
    metric = get_plugin_manager().get("metric", "precision")
    assert metric.cls(metric.options_cls()).compute(ranked, 5) == pytest.approx((1 / 5 + 1 / 5) / 4)


def test_trains_evaluates_registers_and_reloads(tmp_path: Path) -> None:
    data = write_data(tmp_path / "ml-1m")
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
[experiment]
name = "g"
registry = "{tmp_path / 'registry'}"
[dataset.movielens]
data_dir = "{data}"
[recommenders.youtube_dnn]
dim = 32
window = 3
chunk_length = 12
[recommenders.youtube_dnn.training]
epochs = 80
batch_size = 16
lr = 0.01
[evaluation]
metrics = ["hit_rate", "precision"]
ks = [1, 5]
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "recplug", "run", str(spec), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {(r["metric"], r["k"]): r["value"] for r in json.loads((tmp_path / "run" / "results.json").read_text())["rows"]}
    assert rows[("hit_rate", 1)] > 0.8  # the walk is learnt: the next item is predicted first
    # one relevant item per case: precision@5 lies between 1/5 of the top-1 hits and 1/5 (every case a hit)
    assert rows[("hit_rate", 1)] / 5 <= rows[("precision", 5)] <= 0.2
    served = load_model("g-youtube_dnn", registry=str(tmp_path / "registry"))
    assert served.entry["plugin"]["distribution"] == "recplug-youtube-dnn"
    assert served.recommend(history=[3, 4, 5], k=1)[0]["item_id"] == 6


@pytest.mark.realdata
def test_real_ml1m_train_register_reload(tmp_path: Path, real_ml1m: Path) -> None:
    env = {**os.environ, "RECPLUG_DATA_DIR": str(real_ml1m), "RECPLUG_REGISTRY": str(tmp_path / "registry")}
    spec = HERE.parent / "youtube-dnn.toml"
    result = subprocess.run(
        [sys.executable, "-m", "recplug", "run", str(spec), "--out", str(tmp_path / "run"),
         "--set", "recommenders.youtube_dnn.training.epochs=1", "--set", "recommenders.youtube_dnn.training.max_steps_per_epoch=30",
         "--set", "recommenders.youtube_dnn.training.validation_cases=300"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert {r["metric"] for r in rows} == {"ndcg", "hit_rate", "precision"}
    served = load_model("ml1m-youtube-dnn-youtube_dnn", registry=str(tmp_path / "registry"))
    recs = served.recommend(user_id=1, k=5)
    assert len(recs) == 5 and all(r["title"] for r in recs)
