"""kill -9 at random points: during registration the registry only ever shows complete versions; during
training, resume still works."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
def test_kill_9_during_training_then_resume(tmp_path: Path) -> None:
    data = toy_spec("k", registry=tmp_path / "registry", training={"epochs": 30, "batch_size": 4},
                    toy={"users": 400, "length": 40}, baseline=False)  # fmt: skip
    spec = write_spec(tmp_path / "s.toml", to_toml(data))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", **TESTKIT_ENV}
    process = subprocess.Popen([sys.executable, "-m", "recplug", "run", str(spec), "--out", str(out)],
                               stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    for line in process.stderr:  # kill it in the middle of training, after a checkpoint exists
        if "epoch 2/30" in line:
            break
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert ModelRegistry(tmp_path / "registry").list_versions() == []  # nothing was registered
    resumed = subprocess.run([sys.executable, "-m", "recplug", "run", "--resume", str(out),
                              "--set", "recommenders.bigram.training.epochs=4"],
                             capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"resumed from epoch ([2-9]|[12]\d)\b", resumed.stderr)  # from whichever checkpoint was last
    assert [r["version"] for r in ModelRegistry(tmp_path / "registry").list_versions()] == [1]
