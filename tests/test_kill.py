"""kill -9 at random points: during registration the registry only ever shows complete versions; during
training, resume still works."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import TESTKIT_ENV, to_toml, toy_spec, write_spec
from recplug._model_registry import ModelRegistry

REGISTER_FOREVER = """
import sys
import numpy as np
from recplug._components import NoOptions, RunContext
from recplug._data import build_interactions
from recplug._model_registry import ModelRegistry
from recplug._split import TrainView
from recplug_testkit import Counts

rng = np.random.default_rng(int(sys.argv[2]))
n = 200_000  # big enough that a kill lands inside a write now and then
data = build_interactions(rng.integers(0, 500, n), rng.integers(0, 3000, n), np.ones(n), np.arange(n), fingerprint="k")
model = Counts(NoOptions())
visible = np.ones(n, dtype=bool)
model.fit(TrainView(data, visible, visible), None, RunContext())
registry = ModelRegistry(sys.argv[1])
print("ready", flush=True)
while True:
    registry.register("victim", model, provenance={"plugin": {"kind": "baseline", "name": "counts", "distribution": "recplug-testkit",
                      "version": "1.0.0"}, "options": {}, "training": None}, spec={}, data=data, metrics={}, protocol={})
"""


@pytest.mark.slow
def test_kill_9_during_registration_never_shows_a_partial_version(tmp_path: Path) -> None:
    rng = random.Random(0)
    for attempt in range(8):
        process = subprocess.Popen([sys.executable, "-c", REGISTER_FOREVER, str(tmp_path), str(attempt)],
                                   stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        registry = ModelRegistry(tmp_path)
        versions = [row["version"] for row in registry.list_versions()]
        for version in versions:  # every visible version is complete: all checksums verify
            assert registry.load(f"victim:{version}").recommend(user_id=0, k=3)
    assert versions, "no registration ever completed: the kills came too early to test anything"


@pytest.mark.slow
def test_kill_9_during_training_then_resume_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    def spec_for(name: str, epochs: int) -> Path:
        data = toy_spec(name, registry=tmp_path / "registry", training={"epochs": epochs, "batch_size": 4},
                        toy={"users": 400, "length": 40}, baseline=False)  # fmt: skip
        return write_spec(tmp_path / f"{name}.toml", to_toml(data))

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", **TESTKIT_ENV}
    process = subprocess.Popen([sys.executable, "-m", "recplug", "run", str(spec_for("k", 6)), "--out", str(out)],
                               stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:  # kill it in the middle of training, after a checkpoint exists
        if "epoch 2/6" in line:
            break
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert ModelRegistry(tmp_path / "registry").list_versions() == []  # nothing was registered
    resumed = subprocess.run([sys.executable, "-m", "recplug", "run", "--resume", str(out)],
                             capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"resumed from epoch [2-5]\b", resumed.stderr)  # from whichever checkpoint was last
    # the same spec, never interrupted, ends with the same metrics and the same weights
    whole = subprocess.run([sys.executable, "-m", "recplug", "run", str(spec_for("w", 6)), "--out", str(tmp_path / "w")],
                           capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    rows = {name: [(r["metric"], r["k"], r["value"]) for r in json.loads((tmp_path / name / "results.json").read_text())["rows"]]
            for name in ("run", "w")}  # fmt: skip
    assert rows["run"] == rows["w"]
    weights = [torch.load(tmp_path / "registry" / name / "1" / "weights.pt", weights_only=True) for name in ("k-bigram", "w-bigram")]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
