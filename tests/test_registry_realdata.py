"""The ML-1M transformer of examples/ml1m.toml: registered, aliased, listed, and reloaded in a fresh process
with identical top-10 recommendations for 100 users."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recplug._model_registry import ModelRegistry
from recplug._runner import run_experiment
from recplug._spec import apply_overrides, parse_spec, read_toml

REPO = Path(__file__).resolve().parents[1]

FRESH_PROCESS = """
import json, sys
from recplug import load_model
model = load_model(sys.argv[1], registry=sys.argv[2])
users = json.loads(sys.argv[3])
print(json.dumps({u: [r["item_id"] for r in model.recommend(user_id=u, k=10)] for u in users}))
"""


@pytest.mark.realdata
def test_ml1m_transformer_round_trip(real_ml1m: Path, tmp_path: Path, plugins) -> None:
    data = read_toml(REPO / "examples" / "ml1m.toml")
    del data["splits"]["seed_windows"]  # one protocol and no baselines keep the test short
    data["recommenders"] = {"transformer": data["recommenders"]["transformer"]}
    data = apply_overrides(data, [
        f'dataset.movielens.data_dir="{real_ml1m}"', f'experiment.registry="{tmp_path / "registry"}"',
        "recommenders.transformer.training.epochs=1", "recommenders.transformer.training.max_steps_per_epoch=40",
        "recommenders.transformer.training.validation_cases=500",
    ])  # fmt: skip
    result = run_experiment(parse_spec(data, plugins), plugins, run_dir=tmp_path / "run")
    assert result.results["registered"] == ["ml1m-transformer:1"]

    models = ModelRegistry(tmp_path / "registry")
    models.alias("ml1m-transformer:1", "production")
    [row] = models.list_versions()
    assert row["aliases"] == ["production"] and row["plugin"] == "transformer"

    rng = np.random.default_rng(0)
    users = sorted(rng.choice(result.data.user_ids, size=100, replace=False).tolist())
    fitted = result.fitted[0].recommender
    tokens = np.searchsorted(result.data.user_ids, users)
    in_memory = {}
    for user, token in zip(users, tokens):
        history = torch.from_numpy(result.data.sequence(token).astype(np.int64))[None, :]
        top, _ = fitted.recommend(torch.tensor([token]), history, 10)
        in_memory[str(user)] = result.data.item_ids[top[0].numpy()].tolist()

    fresh = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, "ml1m-transformer@production", str(tmp_path / "registry"), json.dumps(users)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout) == in_memory
