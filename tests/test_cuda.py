"""On a CUDA machine: device auto-detection, bf16 autocast training, and a CUDA-trained model that reloads and
serves on the CPU. Skipped where no GPU is present (as in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recplug._devices import resolve_device
from recplug._model_registry import ModelRegistry
from recplug._runner import run_experiment
from recplug._spec import parse_spec
from recplug._split import gather_histories

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_picks_cuda() -> None:
    assert resolve_device("auto").type == "cuda"


@pytest.mark.parametrize("objective", ["window", "all_positions"])
def test_train_on_cuda_serve_on_cpu(ml1m_dir: Path, tmp_path: Path, plugins, objective: str) -> None:
    options = {"objective": objective, "join": "last" if objective == "all_positions" else "flatten",
               "embedding_dim": 16, "num_layers": 1, "num_heads": 2,
               "training": {"epochs": 2, "batch_size": 64, "amp": True}}  # fmt: skip
    spec = parse_spec({
        "experiment": {"name": "gpu", "device": "auto", "registry": str(tmp_path / "registry")},
        "dataset": {"movielens": {"data_dir": str(ml1m_dir)}},
        "recommenders": {"transformer": options},
    }, plugins)  # fmt: skip
    result = run_experiment(spec, plugins, run_dir=tmp_path / "run")
    fitted = result.fitted[0]
    assert fitted.recommender.device.type == "cuda"
    assert next(fitted.recommender.module.parameters()).is_cuda
    served = ModelRegistry(tmp_path / "registry").load("gpu-transformer")
    assert not next(served.recommender.module.parameters()).is_cuda  # registry entries load on the CPU
    cases = fitted.split.test
    histories = gather_histories(result.data, cases.history_start, cases.target_pos)
    users = torch.from_numpy(cases.users)
    gpu_scores = fitted.recommender.score(users, histories).cpu()
    cpu_scores = served.recommender.score(users, histories)
    assert torch.allclose(gpu_scores, cpu_scores, atol=1e-3, rtol=1e-3)
