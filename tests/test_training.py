"""The Trainer: reproducible, resumable, early-stopping, logging to tensorboard; checkpoints with a format.

Core tests: they run on the test kit's plugins only (toy dataset, holdout split, bigram model).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import attrs
import pytest
import torch
from recplug_testkit import Bigram

from helpers import TESTKIT_ENV, run_cli, to_toml, toy_spec, write_spec
from recplug._errors import SpecError
from recplug._model_registry import ModelRegistry
from recplug._runner import run_experiment
from recplug._spec import parse_spec
from recplug._training import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    TrainingInterrupted,
    TrainingOptions,
    TrainingState,
    _lr_lambda,
    _monitored,
    planned_epochs,
)

MODEL_DIR = Path("holdout") / "bigram"


def metrics_of(result) -> dict:
    return {(r["recommender"], r["metric"], r["k"]): r["value"] for r in result.results["rows"]}


def run(toy_plugins, out: Path, resume: bool = False, **training):
    return run_experiment(parse_spec(toy_spec(training=training), toy_plugins), toy_plugins, run_dir=out, resume=resume)


def test_the_model_learns(toy_plugins, tmp_path: Path) -> None:
    untrained = metrics_of(run(toy_plugins, tmp_path / "a", epochs=1, max_steps_per_epoch=1))
    trained = metrics_of(run(toy_plugins, tmp_path / "b", epochs=8))
    assert trained[("bigram", "hits", 5)] > untrained[("bigram", "hits", 5)] + 0.1


def test_bf16_autocast_on_the_cpu_only_when_asked(toy_plugins, tmp_path: Path) -> None:
    def train_loss(**training) -> float:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        return run(toy_plugins, out, epochs=1, **training).fitted[-1].recommender.history[0]["loss/train"]

    plain, low = train_loss(), train_loss(amp_cpu=True)
    assert plain == train_loss(amp=True)  # amp alone is CUDA's: float32 on the CPU
    assert low != plain and abs(low - plain) < 0.02 * plain  # bfloat16 products: close, not equal


def test_bf16_autocast_on_a_cpu_without_bf16_instructions_is_a_warning(toy_plugins, tmp_path: Path, monkeypatch,
                                                                         caplog) -> None:  # fmt: skip
    import recplug._training

    monkeypatch.setattr(recplug._training, "cpu_multiplies_bf16", lambda: False)
    caplog.set_level(logging.WARNING, logger="recplug")
    run(toy_plugins, tmp_path / "a", epochs=1, max_steps_per_epoch=1, amp_cpu=True)
    assert "no bfloat16 instructions" in caplog.text
    caplog.clear()
    run(toy_plugins, tmp_path / "b", epochs=1, max_steps_per_epoch=1)
    assert "bfloat16" not in caplog.text


def test_same_seed_same_metrics_and_logs(toy_plugins, tmp_path: Path) -> None:
    a, b = run(toy_plugins, tmp_path / "a"), run(toy_plugins, tmp_path / "b")
    assert metrics_of(a) == metrics_of(b)
    model_dir = tmp_path / "a" / MODEL_DIR
    assert (model_dir / "checkpoints" / "best.pt").is_file() and (model_dir / "checkpoints" / "last.pt").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(model_dir / "tensorboard")).Reload().Tags()["scalars"]
    assert {"loss/train", "loss/validation", "validation/ndcg@10", "lr", "throughput/samples_per_s"} <= set(scalars)


def test_resume_continues_to_the_same_result(toy_plugins, tmp_path: Path) -> None:
    full = run(toy_plugins, tmp_path / "full", epochs=3)
    run(toy_plugins, tmp_path / "part", epochs=2)  # an interrupted run: 2 of 3 epochs (constant learning rate)
    resumed = run(toy_plugins, tmp_path / "part", resume=True, epochs=3)
    assert metrics_of(resumed) == metrics_of(full)
    fit = resumed.fitted[-1]  # its fit time counts the two epochs trained before the resume
    assert len(fit.recommender.history) == 3
    assert fit.fit_seconds >= sum(h["time/train_s"] + h["time/validation_s"] for h in fit.recommender.history)


def test_the_checkpoint_holds_a_typed_state_and_a_format(toy_plugins, tmp_path: Path) -> None:
    run(toy_plugins, tmp_path / "run", epochs=2)
    payload = torch.load(tmp_path / "run" / MODEL_DIR / "checkpoints" / "last.pt", weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT
    state = TrainingState(**payload["state"])
    assert state.epoch == 2 and state.step > 0 and state.step_in_epoch == 0 and state.best is not None
    assert set(payload["state"]) == {f.name for f in attrs.fields(TrainingState)}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:100]), "cannot be read as a checkpoint"),
        (lambda path: torch.save({"weights": torch.zeros(2)}, path), "is not a recplug training checkpoint"),
        (lambda path: torch.save({**torch.load(path, weights_only=True), "format": None}, path), "format-None"),
        (lambda path: torch.save({k: v for k, v in torch.load(path, weights_only=True).items() if k != "format"}, path),
         "format-1 checkpoint"),
        (lambda path: path.write_text("not a checkpoint"), "cannot be read as a checkpoint"),
    ],
)  # fmt: skip
def test_a_damaged_old_or_foreign_checkpoint_is_one_clear_error(toy_plugins, tmp_path: Path, damage, message) -> None:
    run(toy_plugins, tmp_path / "run", epochs=1)
    last = tmp_path / "run" / MODEL_DIR / "checkpoints" / "last.pt"
    damage(last)
    with pytest.raises(CheckpointError, match=message) as info:
        run(toy_plugins, tmp_path / "run", resume=True, epochs=2)
    assert str(last) in str(info.value) and info.value.exit_code == 2


def test_a_checkpoint_of_another_shape_is_one_clear_error(toy_plugins, tmp_path: Path) -> None:
    run(toy_plugins, tmp_path / "run", epochs=1)
    data = toy_spec(model={"dim": 5}, training={"epochs": 2})
    with pytest.raises(CheckpointError, match="does not fit this model and its options"):
        run_experiment(parse_spec(data, toy_plugins), toy_plugins, run_dir=tmp_path / "run", resume=True)


def test_resuming_a_finished_run_trains_nothing_and_finishes(toy_plugins, tmp_path: Path) -> None:
    full = run(toy_plugins, tmp_path / "run", epochs=2)
    again = run(toy_plugins, tmp_path / "run", resume=True, epochs=2)
    assert metrics_of(again) == metrics_of(full)


def test_early_stopping(toy_plugins, tmp_path: Path) -> None:
    run(toy_plugins, tmp_path / "run", epochs=50, patience=1, lr=2.0, monitor="ndcg@10")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = EventAccumulator(str(tmp_path / "run" / MODEL_DIR / "tensorboard")).Reload().Scalars("loss/train")
    assert 2 <= len(steps) < 50


def test_a_time_budget_stops_after_the_epoch_that_spends_it(toy_plugins, tmp_path: Path) -> None:
    result = run(toy_plugins, tmp_path / "run", epochs=5, max_minutes=1e-9)
    history = result.fitted[-1].recommender.history
    assert [h["epoch"] for h in history] == [1]
    assert history[0]["time/train_s"] > 0 and history[0]["time/validation_s"] > 0
    unbounded = run(toy_plugins, tmp_path / "unbounded", epochs=3, max_minutes=60.0)
    assert [h["epoch"] for h in unbounded.fitted[-1].recommender.history] == [1, 2, 3]


def test_a_budget_spanning_schedule_plans_the_epochs_that_fit_at_the_mean_epoch_time() -> None:
    budget = TrainingOptions(epochs=50, max_minutes=1.0, schedule_span="budget")
    epoch = {"time/train_s": 9.0, "time/validation_s": 1.0}
    assert planned_epochs(budget, []) == 50  # nothing measured yet: all of them
    assert planned_epochs(budget, [epoch]) == 6  # 60 s at 10 s an epoch
    assert planned_epochs(budget, [epoch] * 8) == 8  # never fewer than the epochs done
    assert planned_epochs(attrs.evolve(budget, epochs=4), [epoch]) == 4  # never more than 'epochs'
    assert planned_epochs(attrs.evolve(budget, schedule_span="epochs"), [epoch]) == 50


def test_the_cosine_decay_follows_the_planned_steps_as_they_change() -> None:
    total = [1000]
    factor = _lr_lambda(TrainingOptions(schedule="cosine", warmup_steps=0), lambda: total[0])
    assert factor(500) == pytest.approx(0.5)
    total[0] = 500  # the plan shrank: the same step is now the end of the decay
    assert factor(500) == pytest.approx(0.0) and factor(250) == pytest.approx(0.5)


def test_a_budget_spanning_schedule_without_a_budget_is_a_spec_error(toy_plugins) -> None:
    with pytest.raises(SpecError, match="schedule_span = 'budget' needs 'max_minutes'") as info:
        parse_spec(toy_spec(training={"schedule_span": "budget"}), toy_plugins)
    assert "training" in str(info.value)


def test_a_budget_spanning_schedule_stops_after_the_epochs_that_fit(toy_plugins, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="recplug")
    result = run(toy_plugins, tmp_path / "run", epochs=5, max_minutes=1e-9, schedule_span="budget")
    assert [h["epoch"] for h in result.fitted[-1].recommender.history] == [1]
    assert "time budget: 1e-09 minutes fit 1 of the 5 epochs" in caplog.text


@pytest.mark.parametrize("stopping", [{"max_minutes": 1e-9}, {"max_minutes": 1e-9, "schedule_span": "budget"},
                                      {"patience": 1, "lr": 2.0, "monitor": "ndcg@10"}])
def test_resuming_a_fit_that_had_stopped_trains_no_further_epoch(toy_plugins, tmp_path: Path, stopping) -> None:
    first = run(toy_plugins, tmp_path / "run", epochs=50, **stopping)
    epochs = [h["epoch"] for h in first.fitted[-1].recommender.history]
    assert len(epochs) < 50
    again = run(toy_plugins, tmp_path / "run", resume=True, epochs=50, **stopping)
    assert [h["epoch"] for h in again.fitted[-1].recommender.history] == epochs
    assert metrics_of(again) == metrics_of(first)


def test_resume_from_the_command_line(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.toml", to_toml(toy_spec(registry=tmp_path / "registry", training={"epochs": 1})))
    out = tmp_path / "run"
    first = run_cli("run", str(spec), "--out", str(out), env=TESTKIT_ENV)
    assert first.returncode == 0, first.stderr
    again = run_cli("run", "--resume", str(out), "--set", "recommenders.bigram.training.epochs=2", env=TESTKIT_ENV)
    assert again.returncode == 0, again.stderr
    assert "resumed from epoch 1" in again.stderr and "epoch 2/2" in again.stderr
    (out / "holdout" / "bigram" / "checkpoints" / "last.pt").write_text("garbage")
    broken = run_cli("run", "--resume", str(out), "--set", "recommenders.bigram.training.epochs=3", env=TESTKIT_ENV)
    assert broken.returncode == 2 and "cannot be read as a checkpoint" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_the_monitored_measure_is_minimised_and_never_nan() -> None:
    from recplug._training import TrainingDiverged

    summary = {"loss/validation": 1.5, "validation/ndcg@10": 0.25}
    assert _monitored(summary, "loss", 1) == 1.5
    assert _monitored(summary, "ndcg@10", 1) == -0.25
    with pytest.raises(TrainingDiverged, match="validation loss is not a number after epoch 3"):
        _monitored({**summary, "loss/validation": float("nan")}, "loss", 3)  # NaN never improves: say so


@pytest.mark.parametrize("seeds", [None, [5, 6]], ids=["one seed", "two seeds"])
def test_ctrl_c_stops_after_the_step_and_resume_gives_the_same_result(
    toy_plugins, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seeds: list[int] | None
) -> None:
    # warm-up and cosine decay: the schedule's position is part of what resumes
    data = toy_spec(registry=tmp_path / "registry", training={"batch_size": 8, "schedule": "cosine", "warmup_steps": 20})
    data["recommenders"] = {"counts": {}, "bigram": {**data["recommenders"]["bigram"], **({"seeds": seeds} if seeds else {})}}
    full = run_experiment(parse_spec(data, toy_plugins), toy_plugins, run_dir=tmp_path / "full")

    calls = {"n": 0}
    original = Bigram.loss

    def loss_then_ctrl_c(self, batch):
        calls["n"] += 1
        if calls["n"] == 13:  # somewhere in the middle of an epoch
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, batch)

    monkeypatch.setattr(Bigram, "loss", loss_then_ctrl_c)
    with pytest.raises(TrainingInterrupted, match="interrupted after step") as info:
        run_experiment(parse_spec(data, toy_plugins), toy_plugins, run_dir=tmp_path / "part")
    assert info.value.exit_code == 130 and info.value.message.endswith(f"recplug run --resume {tmp_path / 'part'}")
    folder = tmp_path / "part" / MODEL_DIR / ("seed-5" if seeds else "")  # a seed's folder when there are several
    payload = torch.load(folder / "checkpoints" / "last.pt", weights_only=True)
    assert payload["state"]["step_in_epoch"] > 0  # mid-epoch, exactly where it stopped
    bigrams = [("toy-bigram", v) for v in range(1, len(seeds or [0]) + 1)]
    assert [(r["name"], r["version"]) for r in ModelRegistry(tmp_path / "registry").list_versions()] == [
        *bigrams, ("toy-counts", 1)]  # only the full run's
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was put back

    monkeypatch.setattr(Bigram, "loss", original)
    resumed = run_experiment(parse_spec(data, toy_plugins), toy_plugins, run_dir=tmp_path / "part", resume=True)
    assert metrics_of(resumed) == metrics_of(full)


def test_progress_lines_when_no_bar_can_be_shown(toy_plugins, tmp_path: Path, monkeypatch, caplog) -> None:
    """Under nohup, CI or a log file, a line at a steady interval (here: every step) says where training is."""
    import logging

    import recplug._training as training

    monkeypatch.setattr(training, "PROGRESS_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="recplug"):
        run(toy_plugins, tmp_path / "run", epochs=1)
    lines = [r.getMessage() for r in caplog.records if "samples/s  about" in r.getMessage()]
    assert lines and lines[0].startswith("epoch 1/1  step 1/") and "loss " in lines[0] and "left" in lines[-1]


def test_a_resumed_epoch_reports_the_throughput_of_its_own_steps(toy_plugins, tmp_path: Path, monkeypatch) -> None:
    """samples/s of an epoch resumed mid-way divides the samples trained after the resume by their time (not the
    whole epoch's samples, which printed 649 samples/s where the next full epoch ran at 177)."""
    import recplug._training as training
    from recplug._runner import load_dataset, make_split

    spec = parse_spec(toy_spec(training={"epochs": 1, "batch_size": 4}, toy={"users": 60}), toy_plugins)
    data = load_dataset(spec, toy_plugins, training.RunContext())
    split = make_split(spec.splits[0], data, toy_plugins, training.RunContext())
    context = training.RunContext(seed=5, run_dir=str(tmp_path / "m"))
    calls = {"n": 0}
    original = Bigram.loss

    def loss_then_ctrl_c(self, batch):
        calls["n"] += 1
        if calls["n"] == 20:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, batch)

    monkeypatch.setattr(Bigram, "loss", loss_then_ctrl_c)
    model = spec.recommenders[1].build(toy_plugins)
    with pytest.raises(TrainingInterrupted):
        model.fit(split.train, split.validation, context)
    monkeypatch.setattr(Bigram, "loss", original)
    clock = iter(float(t) for t in range(1000))  # each call to the trainer's clock: one second later
    monkeypatch.setattr(training.time, "perf_counter", lambda: next(clock))
    model = spec.recommenders[1].build(toy_plugins)
    trainer = training.Trainer(model, split.train, split.validation, attrs.evolve(context, resume=True))
    model.prepare(split.train.data)
    result = trainer.fit()
    steps_left = -(-len(split.train.target_positions) // 4) - 20
    samples_here = len(split.train.target_positions) - 20 * 4
    assert steps_left > 0
    assert result["throughput/samples_per_s"] == pytest.approx(samples_here / result["time/train_s"])


@pytest.mark.parametrize(("given", "expected"), [({}, "3000"), ({"GOMP_SPINCOUNT": "300000"}, "300000"),
                                                 ({"OMP_WAIT_POLICY": "ACTIVE"}, None)])
def test_recplug_shortens_openmp_spinning_unless_told(given: dict[str, str], expected: str | None) -> None:
    """Set before torch loads OpenMP (benchmarks/test_cpu_sharing.py measures why); a user's choice is kept."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | given
    code = "import recplug, os, torch; print(os.environ.get('GOMP_SPINCOUNT'))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(expected)


def test_work_spread_over_the_cores_keeps_order_and_runs_torch_on_one_thread_each() -> None:
    """Bulk inference: each batch on its own core with one torch thread; the caller's threads are untouched."""
    import threading

    from recplug._devices import map_on_cores

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = list(map_on_cores(lambda i: (i, torch.get_num_threads(), threading.get_ident()), range(40),
                                 torch.device("cpu")))  # fmt: skip
        assert [i for i, _, _ in seen] == list(range(40))
        assert {threads for _, threads, _ in seen} == {1}
        assert threading.get_ident() not in {thread for _, _, thread in seen}
        assert torch.get_num_threads() == 2
        elsewhere = list(map_on_cores(lambda i: (i, threading.get_ident()), range(3), torch.device("meta")))
        assert elsewhere == [(i, threading.get_ident()) for i in range(3)]  # another device: a plain map here
    finally:
        torch.set_num_threads(before)
