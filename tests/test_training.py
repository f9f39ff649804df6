"""The generic training loop: reproducible, resumable, early-stopping, logging to tensorboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_cli, tiny_transformer_spec, write_ml1m
from recplug._runner import run_experiment
from recplug._spec import parse_spec


def spec_data(data_dir: Path, **training) -> dict:
    return {
        "experiment": {"name": "t", "seed": 5, "device": "cpu"},
        "dataset": {"movielens": {"data_dir": str(data_dir)}},
        "splits": {"leave_one_out": {}},
        "recommenders": {
            "transformer": {
                "embedding_dim": 16, "num_layers": 1, "num_heads": 2, "user_embedding_dim": 8,
                "training": {"epochs": 3, "batch_size": 64, "validation_cases": 50, **training},
            }
        },
        "evaluation": {"ks": [5, 10]},
    }  # fmt: skip


def metrics_of(result) -> dict:
    return {(r["metric"], r["k"]): r["value"] for r in result.results["rows"]}


def test_same_seed_same_metrics_and_logs(ml1m_dir: Path, tmp_path: Path, registry) -> None:
    spec = parse_spec(spec_data(ml1m_dir), registry)
    a = run_experiment(spec, registry, run_dir=tmp_path / "a")
    b = run_experiment(spec, registry, run_dir=tmp_path / "b")
    assert metrics_of(a) == metrics_of(b)
    model_dir = tmp_path / "a" / "leave_one_out" / "transformer"
    assert (model_dir / "checkpoints" / "best.pt").is_file() and (model_dir / "checkpoints" / "last.pt").is_file()
    events = list((model_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert {"loss/train", "loss/validation", "validation/ndcg@10", "lr", "throughput/samples_per_s"} <= set(scalars)


def test_resume_continues_to_the_same_result(ml1m_dir: Path, tmp_path: Path, registry) -> None:
    full = run_experiment(parse_spec(spec_data(ml1m_dir), registry), registry, run_dir=tmp_path / "full")
    # An interrupted run: only 2 of 3 epochs happened; resuming with 3 epochs finishes the job.
    run_experiment(parse_spec(spec_data(ml1m_dir, epochs=2), registry), registry, run_dir=tmp_path / "part")
    resumed = run_experiment(parse_spec(spec_data(ml1m_dir), registry), registry, run_dir=tmp_path / "part", resume=True)
    assert metrics_of(resumed) == pytest.approx(metrics_of(full))


def test_early_stopping(ml1m_dir: Path, tmp_path: Path, registry) -> None:
    spec = parse_spec(spec_data(ml1m_dir, epochs=50, patience=1, lr=0.5, monitor="ndcg@10"), registry)
    run_experiment(spec, registry, run_dir=tmp_path / "run")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path / "run" / "leave_one_out" / "transformer" / "tensorboard"
    steps = EventAccumulator(str(logs)).Reload().Scalars("loss/train")
    assert 2 <= len(steps) < 50


def test_resume_from_the_command_line(tmp_path: Path) -> None:
    data = write_ml1m(tmp_path / "ml-1m")
    spec = tiny_transformer_spec(tmp_path / "s.toml", data, "cli", training="epochs = 1\nbatch_size = 128")
    out = tmp_path / "run"
    first = run_cli("run", str(spec), "--out", str(out))
    assert first.returncode == 0, first.stderr
    again = run_cli("run", "--resume", str(out), "--set", "recommenders.transformer.training.epochs=2")
    assert again.returncode == 0, again.stderr
    assert "resumed from epoch 1" in again.stderr and "epoch 2/2" in again.stderr


def test_models_without_validation_examples_monitor_ndcg() -> None:
    from recplug._training import _monitored

    summary = {"loss/validation": float("nan"), "validation/ndcg@10": 0.25}
    assert _monitored(summary, "loss") == -0.25  # not NaN, which would never count as an improvement
    assert _monitored({**summary, "loss/validation": 1.5}, "loss") == 1.5
    assert _monitored({**summary, "loss/validation": 1.5}, "ndcg@10") == -0.25


def test_ctrl_c_stops_after_the_step_and_resume_gives_the_same_result(
    ml1m_dir: Path, tmp_path: Path, registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    from recplug._model_registry import ModelRegistry
    from recplug._training import TrainingInterrupted
    from recplug_transformer import Transformer

    data = spec_data(ml1m_dir, batch_size=32)
    data["experiment"]["registry"] = str(tmp_path / "registry")
    full = run_experiment(parse_spec(data, registry), registry, run_dir=tmp_path / "full")

    calls = {"n": 0}
    original = Transformer.loss

    def loss_then_ctrl_c(self, batch):
        calls["n"] += 1
        if calls["n"] == 13:  # somewhere in the middle of an epoch
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, batch)

    monkeypatch.setattr(Transformer, "loss", loss_then_ctrl_c)
    with pytest.raises(TrainingInterrupted, match="interrupted after step") as info:
        run_experiment(parse_spec(data, registry), registry, run_dir=tmp_path / "part")
    assert info.value.exit_code == 130 and f"recplug run --resume {tmp_path / 'part'}" in info.value.message
    assert (tmp_path / "part" / "leave_one_out" / "transformer" / "checkpoints" / "last.pt").is_file()
    assert [r["version"] for r in ModelRegistry(tmp_path / "registry").list()] == [1]  # only the full run's
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was put back

    monkeypatch.setattr(Transformer, "loss", original)
    resumed = run_experiment(parse_spec(data, registry), registry, run_dir=tmp_path / "part", resume=True)
    assert metrics_of(resumed) == pytest.approx(metrics_of(full))
