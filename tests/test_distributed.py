"""torchrun with 2 CPU processes (gloo) trains the same model as one process (core: the test kit's plugins)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import TESTKIT_ENV, to_toml, toy_spec, write_spec
from recplug._model_registry import ModelRegistry

TOLERANCE = 1e-5
"""Largest absolute weight difference allowed between the 1- and 2-process models. The global batch and the sample
order are identical; only the order of floating-point gradient reductions differs."""


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **TESTKIT_ENV}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path: Path) -> None:
    data = toy_spec("ddp", registry=tmp_path / "registry", training={"epochs": 3, "batch_size": 16}, baseline=False)
    spec = write_spec(tmp_path / "s.toml", to_toml(data))
    single = run([sys.executable, "-m", "recplug", "run", str(spec), "--out", str(tmp_path / "one")])
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    double = run([*torchrun, "-m", "recplug", "run", str(spec), "--out", str(tmp_path / "two")])
    assert double.returncode == 0, double.stderr
    assert "2 process(es)" in double.stderr
    registry = ModelRegistry(tmp_path / "registry")
    assert [r["version"] for r in registry.list_versions()] == [1, 2]  # only rank 0 registered: one per run
    one, two = (torch.load(tmp_path / "registry" / "ddp-bigram" / v / "weights.pt", weights_only=True) for v in "12")
    assert one.keys() == two.keys()
    for name in one:
        difference = (one[name] - two[name]).abs().max().item()
        assert difference <= TOLERANCE, (name, difference)
