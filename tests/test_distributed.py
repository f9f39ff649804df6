"""torchrun with 2 CPU processes (gloo) trains the same model as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import tiny_transformer_spec, write_ml1m
from recplug._model_registry import ModelRegistry

TOLERANCE = 0.02
"""Largest absolute difference allowed between 1- and 2-process metrics. With dropout off, the global batch and
sample order are identical; only the order of floating-point gradient reductions differs."""


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, **env}, timeout=600)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path: Path) -> None:
    data = write_ml1m(tmp_path / "ml-1m", n_users=80)
    no_dropout = "user_embedding_dim = 8\nembedding_dropout = 0.0\nattention_dropout = 0.0\nresidual_dropout = 0.0"
    spec = tiny_transformer_spec(tmp_path / "s.toml", data, "ddp", tmp_path / "registry", model=no_dropout,
                                 training="epochs = 2\nbatch_size = 64", evaluation="ks = [5, 10]")  # fmt: skip
    env = {"OMP_NUM_THREADS": "1"}
    single = run([sys.executable, "-m", "recplug", "run", str(spec), "--out", str(tmp_path / "one")], env)
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    double = run([*torchrun, "-m", "recplug", "run", str(spec), "--out", str(tmp_path / "two")], env)
    assert double.returncode == 0, double.stderr
    assert "2 process(es)" in double.stderr
    metrics = {}
    for name in ("one", "two"):
        rows = json.loads((tmp_path / name / "results.json").read_text())["rows"]
        metrics[name] = {(r["metric"], r["k"]): r["value"] for r in rows}
    assert metrics["one"].keys() == metrics["two"].keys()
    for key, value in metrics["one"].items():
        assert abs(value - metrics["two"][key]) <= TOLERANCE, (key, value, metrics["two"][key])
    # only rank 0 registered: one version per run
    assert [r["version"] for r in ModelRegistry(tmp_path / "registry").list_versions()] == [1, 2]
