"""Training torch models: the :class:`Model` contract and the :class:`Trainer` that fits one.

The trainer is a short sequence of named steps: :meth:`Trainer.plan` (examples, steps, optimizer),
:meth:`Trainer.resume` (from the last checkpoint), :meth:`Trainer.wrap` (``torch.compile`` and
DistributedDataParallel), :meth:`Trainer.run_epoch` and :meth:`Trainer.end_epoch` (validation, checkpoints,
early stopping). Where it stands is a typed :class:`TrainingState`, which is also what a checkpoint records.

Adam(W) with optional warm-up and cosine/linear decay, gradient clipping, early stopping on validation loss
or NDCG@10, best/last checkpoints with resume, AMP on CUDA, tensorboard scalars and tqdm progress bars.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import sys
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch
from tqdm import tqdm

from . import _distributed as distributed
from ._components import Recommender, RunContext
from ._data import Interactions
from ._devices import cpu_multiplies_bf16, resolve_device, reuse_freed_memory
from ._errors import DataError, RecplugError, SpecError
from ._evaluation import rank_cases
from ._examples import ExampleSource
from ._split import EvalCases, TrainView

log = logging.getLogger("recplug.training")

CHECKPOINT_FORMAT = 2
"""Bumped when a checkpoint's layout changes; format 1 (recplug 0.1) had no format key and a plain state dict."""


def _in(low: int, high: int) -> Callable[[Any, Any, Any], None]:
    return attrs.validators.and_(attrs.validators.ge(low), attrs.validators.le(high))


def _positive_or_none(instance: Any, attribute: Any, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"'{attribute.name}' must be > 0 (or absent), got {value}")


def _two_betas(instance: Any, attribute: Any, value: list[float]) -> None:
    if len(value) != 2 or not all(0.0 <= b < 1.0 for b in value):
        raise ValueError(f"'{attribute.name}' must be two numbers in [0, 1), got {value}")


@attrs.frozen
class TrainingOptions:
    epochs: int = attrs.field(default=10, validator=_in(1, 1_000_000), metadata={"doc": "Passes over the training examples."})
    batch_size: int = attrs.field(default=512, validator=_in(1, 2**24), metadata={"doc": "Examples per step."})
    lr: float = attrs.field(default=1e-3, validator=attrs.validators.gt(0.0), metadata={"doc": "Peak learning rate."})
    weight_decay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0), metadata={"doc": "AdamW weight decay."})
    betas: list[float] = attrs.field(
        factory=lambda: [0.9, 0.999], validator=_two_betas, metadata={"doc": "Adam betas: two numbers in [0, 1)."}
    )
    schedule: Literal["constant", "cosine", "linear"] = attrs.field(
        default="constant", metadata={"doc": "Learning-rate decay after warm-up."}
    )
    warmup_steps: int = attrs.field(default=0, validator=attrs.validators.ge(0), metadata={"doc": "Linear warm-up steps."})
    grad_clip: float | None = attrs.field(
        default=1.0, validator=_positive_or_none, metadata={"doc": "Max gradient norm (none: no clipping)."},
    )  # fmt: skip
    monitor: Literal["auto", "loss", "ndcg@10"] = attrs.field(
        default="auto",
        metadata={"doc": "Validation measure for early stopping and the best checkpoint. 'auto': the validation "
                         "loss when the model offers validation examples, else validation NDCG@10. Asking for "
                         "'loss' from a model without validation examples is an error."},
    )
    patience: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1)),
        metadata={"doc": "Stop after this many epochs without improvement (none: never stop early)."},
    )  # fmt: skip
    validation_cases: int = attrs.field(
        default=20_000, validator=attrs.validators.ge(1), metadata={"doc": "At most this many validation cases per epoch."}
    )
    max_steps_per_epoch: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1)),
        metadata={"doc": "Cap on steps per epoch (quick runs and tests)."},
    )  # fmt: skip
    amp: bool = attrs.field(default=True, metadata={"doc": "bf16 autocast on CUDA (see amp_cpu for the CPU)."})
    amp_cpu: bool = attrs.field(
        default=False,
        metadata={"doc": "bf16 autocast on the CPU too: the matrix products of training steps in bfloat16, which "
                         "CPUs with bf16 instructions (AVX-512 BF16, AMX) run several times faster than float32. "
                         "Off by default, so CPU results stay those of float32; validation and evaluation stay "
                         "float32 either way."},
    )  # fmt: skip
    compile: bool = attrs.field(default=False, metadata={"doc": "Wrap the module with torch.compile."})
    threads: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_in(1, 1024)),
        metadata={"doc": "torch CPU threads (default: OMP_NUM_THREADS when set, else the cores this process may "
                         "run on)."},
    )  # fmt: skip
    max_minutes: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0.0)),
        metadata={"doc": "A wall-clock budget: stop after the first epoch that ends this many minutes of training "
                         "and validation after the start (a resumed run counts its earlier epochs). The schedule "
                         "still spans 'epochs' unless schedule_span = 'budget'."},
    )  # fmt: skip
    schedule_span: Literal["epochs", "budget"] = attrs.field(
        default="epochs",
        metadata={"doc": "What the learning-rate decay spans: all 'epochs', or (with max_minutes) the 'budget': "
                         "after every epoch the epochs that fit max_minutes at the mean epoch time so far "
                         "(validation included, at most 'epochs'), so a slower machine still finishes its decay, "
                         "and training stops after the last of them. The number of epochs then depends on the "
                         "machine's speed."},
    )

    def __attrs_post_init__(self) -> None:
        if self.schedule_span == "budget" and self.max_minutes is None:
            raise ValueError("schedule_span = 'budget' needs 'max_minutes' (the budget the schedule spans)")


class Model(Recommender):
    """A torch recommender trained by recplug's :class:`Trainer`.

    Subclasses build their ``torch.nn.Module`` in :meth:`build`, describe training
    examples in :meth:`training_examples` and the loss in :meth:`loss`; :meth:`fit`
    runs the trainer with the ``training`` options of the spec.
    """

    kind = "model"
    module: torch.nn.Module

    def __init__(self, options: Any, training: TrainingOptions | None = None) -> None:
        super().__init__(options)
        self.training = training or TrainingOptions()

    @abstractmethod
    def build(self, data: Interactions) -> torch.nn.Module:
        """Create the module for this dataset's vocabulary sizes (called before training or loading)."""

    @abstractmethod
    def training_examples(self, train: TrainView) -> ExampleSource:
        """The training examples: an indexable source of batches."""

    def validation_examples(self, data: Interactions, cases: EvalCases) -> ExampleSource | None:
        """Examples for the validation loss (default: none, so only validation NDCG@10 is measured)."""
        return None

    @abstractmethod
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of one batch (a scalar)."""

    def prepare(self, data: Interactions) -> None:
        """Build the module for ``data`` and remember its vocabulary sizes."""
        self.n_items = data.n_items
        self.pad_token = data.pad_token
        self.module = self.build(data)

    def fit(self, train: TrainView, validation: EvalCases, context: RunContext) -> None:
        self.prepare(train.data)
        Trainer(self, train, validation, context).fit()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], data: Interactions) -> None:
        self.prepare(data)
        self.module.load_state_dict(state)
        self.module.eval()

    def to(self, device: torch.device | str) -> Model:
        self.device = torch.device(device)
        self.module.to(self.device)
        return self


@attrs.define
class TrainingState:
    """Where training stands after the last completed step; the ``state`` of every checkpoint."""

    epoch: int = 0
    """Completed epochs."""
    step: int = 0
    """Optimizer steps taken in all."""
    best: float | None = None
    """Best monitored validation value so far (lower is better)."""
    bad_epochs: int = 0
    """Epochs since the last improvement."""
    step_in_epoch: int = 0
    """Steps already taken of the current epoch (non-zero only after an interruption)."""
    epoch_seen: int = 0
    """Examples seen in those steps."""
    epoch_loss: float = 0.0
    """Sum of their losses, weighted by examples."""
    history: list[dict[str, float]] = attrs.Factory(list)
    """The summary of every completed epoch (``epoch``, ``loss/train``, ``validation/ndcg@10``, ...)."""


@attrs.frozen(eq=False)
class TrainingPlan:
    """What one training run will do, fixed before the first step."""

    examples: ExampleSource
    validation_examples: ExampleSource | None
    validation_cases: EvalCases
    steps_per_epoch: int
    monitor: Literal["loss", "ndcg@10"]


class Trainer:
    """Fits one :class:`Model` on a training view; ``fit()`` leaves the best weights loaded."""

    def __init__(self, model: Model, train: TrainView, validation: EvalCases, context: RunContext) -> None:
        self.model, self.train, self.validation, self.context = model, train, validation, context
        self.options = model.training
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.state = TrainingState()
        run_dir = Path(context.run_dir) / "checkpoints" if context.run_dir else None
        self.checkpoints = Checkpoints(run_dir if self.rank == 0 else None)
        self.resume_from = Checkpoints(run_dir)

    def fit(self) -> dict[str, float]:
        """Plan, resume, wrap, then run epochs until done or stopped early; returns the last epoch's summary."""
        opts = self.options
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.device = resolve_device(self.context.device)
        if self.device.type == "cpu":
            reuse_freed_memory()
            if opts.amp_cpu and not cpu_multiplies_bf16():
                log.warning("amp_cpu: torch finds no bfloat16 instructions (AVX-512 BF16, AMX) on this CPU, where "
                            "bfloat16 training steps may run slower than float32 ones")  # fmt: skip
        self.model.to(self.device)
        torch.manual_seed(self.context.seed)
        plan = self.plan()
        self.optimizer, self.scheduler = _optimizer_and_schedule(
            self.model, opts, lambda: planned_epochs(opts, self.state.history) * plan.steps_per_epoch
        )
        stopped = self.resume() if self.context.resume else False
        step_fn = self.wrap()
        writer = _tensorboard(self.context) if self.rank == 0 else None
        summary: dict[str, float] = {}
        stop = StopRequest()
        try:
            for epoch in range(self.state.epoch, self.state.epoch if stopped else opts.epochs):
                summary = self.run_epoch(epoch, plan, step_fn, stop)
                if self.end_epoch(epoch, plan, summary, writer):
                    break
        finally:
            stop.restore()
            if writer:
                writer.close()
        self.checkpoints.restore_best(self.model)
        self.model.module.eval()
        self.model.history = list(self.state.history)
        return summary

    def plan(self) -> TrainingPlan:
        """Training and validation examples, and the steps per epoch (the global batch shared by every process)."""
        opts, model = self.options, self.model
        examples = model.training_examples(self.train)
        if opts.batch_size % self.world:
            raise SpecError(f"batch_size {opts.batch_size} must be divisible by the {self.world} processes",
                            where="training.batch_size")  # fmt: skip
        steps = math.ceil(len(examples) / opts.batch_size)
        if self.world > 1 and len(examples) % opts.batch_size and len(examples) % opts.batch_size < self.world:
            steps -= 1  # a final batch too small to give every process a share
        if opts.max_steps_per_epoch:
            steps = min(steps, opts.max_steps_per_epoch)
        if steps == 0:
            raise DataError("there are no training examples: every user's history is held out or too short")
        validation_examples = model.validation_examples(self.train.data, self.validation)
        has_loss = validation_examples is not None and len(validation_examples) > 0
        monitor = opts.monitor if opts.monitor != "auto" else "loss" if has_loss else "ndcg@10"
        if monitor == "loss" and not has_loss:
            raise SpecError(f"monitor = 'loss' needs validation examples, and {type(model).__name__} offers none "
                            "here; use 'ndcg@10' or 'auto'", where="training.monitor")  # fmt: skip
        if monitor == "ndcg@10" and len(self.validation) == 0:
            raise DataError("the split has no validation cases, so no validation measure can pick the best epoch")
        log.info("the best epoch is picked by validation %s", monitor)
        return TrainingPlan(
            examples=examples,
            validation_examples=validation_examples,
            validation_cases=_subsample(self.validation, opts.validation_cases, self.context.seed),
            steps_per_epoch=steps,
            monitor=monitor,
        )

    def resume(self) -> bool:
        """Continue from the last checkpoint, when there is one: weights, optimizer, schedule, RNG and state.
        True when that fit had already stopped (patience or time budget)."""
        resumed = self.resume_from.load("last", self.model, self.optimizer, self.scheduler)
        if resumed is not None:
            self.checkpoints.best_state = self.resume_from.best_state
            self.state = resumed
            log.info("resumed from epoch %d", self.state.epoch)
            reason = self.stop_reason() if resumed.step_in_epoch == 0 else None
            if reason:
                log.info("%s before the resume: no further epoch", reason)
                return True
        return False

    def wrap(self) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        """The loss function the steps call: compiled, and under DistributedDataParallel with several processes."""
        step_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor] = self.model.loss
        if self.options.compile:
            step_fn = torch.compile(step_fn)
        if self.world > 1:  # DistributedDataParallel averages the gradients of every process's share
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            step_fn = DistributedDataParallel(distributed.LossModule(self.model), device_ids=device_ids)
        return step_fn

    def run_epoch(self, epoch: int, plan: TrainingPlan, step_fn: Callable, stop: StopRequest) -> dict[str, float]:
        """The steps of one epoch (from where an interrupted one stopped); returns its training summary."""
        opts, model, state, world = self.options, self.model, self.state, self.world
        model.module.train()
        order = np.random.default_rng([self.context.seed, epoch]).permutation(len(plan.examples))
        plan.examples.begin_epoch(np.random.default_rng([self.context.seed, epoch, 1]))
        started, seen = time.perf_counter(), state.epoch_seen
        losses: list[torch.Tensor] = []  # kept where they are made: reading each would make the host wait for a
        counts: list[int] = []  # GPU at every step
        seen_here = 0  # examples of this process's steps: a resumed epoch's earlier ones took no time here
        autocast = (self.device.type == "cuda" and opts.amp) or (self.device.type == "cpu" and opts.amp_cpu)
        steps = range(state.step_in_epoch, plan.steps_per_epoch)
        title = f"epoch {epoch + 1}/{planned_epochs(opts, state.history)}"
        progress = Progress(title, plan.steps_per_epoch, state.step_in_epoch)
        bar = tqdm(steps, desc=progress.title, leave=False, disable=not progress.bar)
        for i in bar:
            batch = plan.examples.batch(order[i * opts.batch_size : (i + 1) * opts.batch_size][self.rank :: world])
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = step_fn(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if opts.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.module.parameters(), opts.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            state.step += 1
            n = len(next(iter(batch.values()))) * world
            seen += n
            seen_here += n
            losses.append(loss.detach())
            counts.append(n)
            if progress.due(i + 1):
                progress.update(bar, i + 1, loss.item(), seen_here / (time.perf_counter() - started))
            if stop.requested:  # Ctrl-C: finish this step, keep a checkpoint of exactly here, stop
                state.step_in_epoch, state.epoch_seen = i + 1, seen
                state.epoch_loss += _weighted_sum(losses, counts)
                self.checkpoints.save("last", model, self.optimizer, self.scheduler, state)
                where = _run_directory(self.context.run_dir)
                raise TrainingInterrupted(
                    f"interrupted after step {i + 1} of epoch {epoch + 1}; checkpoint saved. "
                    f"Continue with: recplug run --resume {where}",
                    stop.signum or signal.SIGINT,
                )
        total_loss = state.epoch_loss + _weighted_sum(losses, counts)
        train_time = time.perf_counter() - started
        return {"loss/train": total_loss / max(seen, 1), "throughput/samples_per_s": seen_here / train_time,
                "lr": float(self.scheduler.get_last_lr()[0]), "time/train_s": train_time}  # fmt: skip

    def end_epoch(self, epoch: int, plan: TrainingPlan, summary: dict[str, float], writer: Any) -> bool:
        """Validate, keep the best and last checkpoints, report; True when training should stop early."""
        opts, state = self.options, self.state
        started = time.perf_counter()
        summary.update(validate(self.model, plan.validation_examples, plan.validation_cases, opts.batch_size, self.train))
        summary["time/validation_s"] = time.perf_counter() - started
        # every process decides on the time budget from the same figures: rank 0's
        summary["time/train_s"], summary["time/validation_s"] = distributed.broadcast(
            (summary["time/train_s"], summary["time/validation_s"])
        )
        measure = _monitored(summary, plan.monitor, epoch + 1)
        improved = state.best is None or measure < state.best
        state.epoch = epoch + 1
        state.best = measure if improved else state.best
        state.bad_epochs = 0 if improved else state.bad_epochs + 1
        state.step_in_epoch, state.epoch_seen, state.epoch_loss = 0, 0, 0.0
        state.history.append({"epoch": epoch + 1, **{key: float(value) for key, value in summary.items()}})
        if improved:
            self.checkpoints.save("best", self.model, self.optimizer, self.scheduler, state)
        self.checkpoints.save("last", self.model, self.optimizer, self.scheduler, state)
        if self.rank == 0:
            _report_epoch(writer, summary, epoch + 1, planned_epochs(opts, state.history), improved)
        if self.context.on_epoch is not None:
            self.context.on_epoch(epoch + 1, summary)
        reason = self.stop_reason()
        if reason:
            log.info(reason)
        return reason is not None

    def stop_reason(self) -> str | None:
        """Why training ends after the epochs completed so far (patience or the time budget), or None."""
        opts, state = self.options, self.state
        if opts.patience is not None and state.bad_epochs >= opts.patience:
            return f"early stop: no improvement for {opts.patience} epochs"
        planned = planned_epochs(opts, state.history)
        if state.epoch >= planned and planned < opts.epochs:
            return f"time budget: {opts.max_minutes:g} minutes fit {planned} of the {opts.epochs} epochs"
        spent = trained_seconds(state.history)
        if opts.max_minutes is not None and spent >= opts.max_minutes * 60 and state.epoch < opts.epochs:
            return f"time budget reached: {spent / 60:.1f} of {opts.max_minutes:g} minutes after {state.epoch} epochs"
        return None


def _run_directory(component_dir: str | None) -> str:
    """The run directory above a component's folder (the one holding spec.json), for the resume hint."""
    if component_dir is None:
        return "RUN_DIR"
    found = next((p for p in Path(component_dir).parents if (p / "spec.json").exists()), None)
    return str(found or Path(component_dir).parent.parent)


def train_model(model: Model, train: TrainView, validation: EvalCases, context: RunContext) -> dict[str, float]:
    """Train ``model.module`` in place (the model must be prepared); leaves the best weights loaded."""
    return Trainer(model, train, validation, context).fit()


@torch.no_grad()
def validate(model: Model, examples: ExampleSource | None, cases: EvalCases, batch_size: int, train: TrainView) -> dict[str, float]:
    """Validation loss (when the model offers validation examples) and NDCG@10 / HR@10 on ``cases``."""
    model.module.eval()
    result = {"loss/validation": float("nan")}
    if examples is not None and len(examples):
        total, count = 0.0, 0
        for lo in range(0, len(examples), batch_size):
            batch = examples.batch(np.arange(lo, min(lo + batch_size, len(examples))))
            batch = {k: v.to(model.device) for k, v in batch.items()}
            n = len(next(iter(batch.values())))
            total += model.loss(batch).item() * n
            count += n
        result["loss/validation"] = total / count
    if len(cases):
        ranked = rank_cases(model, train.data, cases, 10, batch_size=1024)
        result["validation/ndcg@10"] = ranked.ndcgs(10).mean().item()
        result["validation/hit_rate@10"] = ranked.hits(10).mean().item()
    model.module.train()
    return result


def _weighted_sum(values: list[torch.Tensor], weights: list[int]) -> float:
    """``sum(value * weight)`` in float64, reading the values off their device once."""
    if not values:
        return 0.0
    return float(torch.stack(values).cpu().double() @ torch.tensor(weights, dtype=torch.float64))


class Progress:
    """Progress of an epoch: a tqdm bar on a terminal; elsewhere (nohup, CI, a log file, a terminal of 0
    columns) a log line every :data:`PROGRESS_SECONDS`, with the step, loss, samples/s and time left."""

    def __init__(self, title: str, steps: int, first_step: int) -> None:
        self.title, self.steps, self.first_step = title, steps, first_step
        informative = log.isEnabledFor(logging.INFO)
        self.bar = informative and sys.stderr.isatty() and shutil.get_terminal_size((0, 0)).columns > 0
        self.lines = informative and not self.bar
        self.started = self.last = time.perf_counter()

    def due(self, step: int) -> bool:
        """Whether :meth:`update` shows anything after ``step`` (its loss costs a GPU a wait for the host)."""
        if self.bar:
            return step % 20 == 1
        return self.lines and step != self.steps and time.perf_counter() - self.last >= PROGRESS_SECONDS

    def update(self, bar: Any, step: int, loss: float, samples_per_s: float) -> None:
        if self.bar:
            bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{samples_per_s:.0f}")
            return
        now = time.perf_counter()
        self.last = now
        left = int((now - self.started) / max(step - self.first_step, 1) * (self.steps - step))
        log.info("%s  step %d/%d (%d%%)  loss %.4f  %.0f samples/s  about %dm%02ds left", self.title, step,
                 self.steps, 100 * step // self.steps, loss, samples_per_s, left // 60, left % 60)  # fmt: skip


PROGRESS_SECONDS = 30.0
"""How often training logs a progress line when no progress bar can be shown."""


class TrainingInterrupted(RecplugError):
    """Training was stopped by Ctrl-C (exit 130) or SIGTERM (exit 143) after a step; the last checkpoint holds
    exactly that step."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class TrainingDiverged(RecplugError):
    """The monitored validation measure is not a number."""


class CheckpointError(RecplugError):
    """A checkpoint that cannot be resumed from: damaged, foreign, or of another format."""


class StopRequest:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM (what schedulers and containers send) into a request to stop
    after the current step; a second one aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s: stopping after the current step (again to abort at once)", signal.Signals(signum).name)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def _monitored(summary: dict[str, float], monitor: str, epoch: int) -> float:
    """The validation measure to minimise: the loss, or -NDCG@10. Not a number is an error, never a silent
    'no improvement' (which would keep the first epoch's weights)."""
    value = summary["loss/validation"] if monitor == "loss" else -summary.get("validation/ndcg@10", math.nan)
    if math.isnan(value):
        raise TrainingDiverged(f"validation {monitor} is not a number after epoch {epoch}: training diverged "
                               "(lower training.lr, or clip gradients with training.grad_clip)")  # fmt: skip
    return value


def _subsample(cases: EvalCases, limit: int, seed: int) -> EvalCases:
    if len(cases) <= limit:
        return cases
    index = np.sort(np.random.default_rng(seed).choice(len(cases), size=limit, replace=False))
    return cases.subset(index)


def _optimizer_and_schedule(model: Model, opts: TrainingOptions, total_steps: Callable[[], int]) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the module's parameters and a per-step LambdaLR (warm-up, then constant/cosine/linear decay
    over ``total_steps()``, asked at every step).

    AdamW is torch's fused kernel where every parameter allows it (floating point, on the CPU or CUDA): one
    call per step instead of a handful of small operations per parameter tensor, the same update."""
    betas = (opts.betas[0], opts.betas[1])
    parameters = list(model.module.parameters())
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in parameters)
    optimizer = torch.optim.AdamW(parameters, lr=opts.lr, betas=betas, weight_decay=opts.weight_decay,
                                  fused=fused or None)  # fmt: skip
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(opts, total_steps))


def _report_epoch(writer: Any, summary: dict[str, float], epoch: int, epochs: int, improved: bool) -> None:
    """Tensorboard scalars of the epoch and its one-line summary in the log (``*``: a new best)."""
    if writer:
        for key, value in summary.items():
            if key != "time/train_s":
                writer.add_scalar(key, value, epoch)
        writer.flush()
    measured = [(name, summary.get(key, math.nan)) for name, key in
                (("train loss", "loss/train"), ("val loss", "loss/validation"), ("val ndcg@10", "validation/ndcg@10"))]
    parts = [f"{name} {value:.4f}" for name, value in measured if not math.isnan(value)]  # a measure not taken: left out
    log.info("epoch %d/%d  %s  %.0f samples/s  %.1fs%s", epoch, epochs, "  ".join(parts),
             summary["throughput/samples_per_s"], summary["time/train_s"], "  *" if improved else "")  # fmt: skip


def trained_seconds(history: list[dict[str, float]]) -> float:
    """Training and validation time of every epoch in ``history`` (a resumed fit's history includes the epochs
    trained before the resume)."""
    return sum(e.get("time/train_s", 0.0) + e.get("time/validation_s", 0.0) for e in history)


def planned_epochs(opts: TrainingOptions, history: list[dict[str, float]]) -> int:
    """The epochs the schedule spans after the completed epochs in ``history``: ``opts.epochs``, or with
    ``schedule_span = 'budget'`` those that fit ``max_minutes`` at their mean time so far (never fewer than
    the epochs done, never more than ``opts.epochs``)."""
    if opts.schedule_span == "epochs" or opts.max_minutes is None or not history:
        return opts.epochs
    mean_epoch_s = trained_seconds(history) / len(history)
    fit = int(opts.max_minutes * 60 // mean_epoch_s) if mean_epoch_s > 0 else opts.epochs
    return min(opts.epochs, max(len(history), fit))


def _lr_lambda(opts: TrainingOptions, total_steps: Callable[[], int]) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < opts.warmup_steps:
            return (step + 1) / opts.warmup_steps
        progress = (step - opts.warmup_steps) / max(1, total_steps() - opts.warmup_steps)
        if opts.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if opts.schedule == "linear":
            return max(0.0, 1 - progress)
        return 1.0

    return factor


def _tensorboard(context: RunContext) -> Any:
    if not context.run_dir:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(Path(context.run_dir) / "tensorboard"))


class Checkpoints:
    """``best.pt`` and ``last.pt`` in one folder, written atomically, read with ``weights_only=True``.

    A checkpoint is ``{"format", "module", "optimizer", "scheduler", "state", "torch_rng"[, "cuda_rng"]}``;
    ``state`` is a :class:`TrainingState` as a plain dict.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.best_state: dict[str, torch.Tensor] | None = None

    def save(self, name: str, model: Model, optimizer: torch.optim.Optimizer, scheduler: Any, state: TrainingState) -> None:
        if name == "best":
            self.best_state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "module": model.module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "state": attrs.asdict(state),
            "torch_rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            payload["cuda_rng"] = torch.stack(torch.cuda.get_rng_state_all())
        tmp = self.folder / f".{name}.pt.tmp"
        torch.save(payload, tmp)
        tmp.replace(self.folder / f"{name}.pt")

    def load(self, name: str, model: Model, optimizer: torch.optim.Optimizer, scheduler: Any) -> TrainingState | None:
        """Restore everything from ``name.pt``; None when there is none. A damaged or foreign file is a
        :class:`CheckpointError` naming it."""
        path = self.folder / f"{name}.pt" if self.folder else None
        if path is None or not path.exists():
            return None
        payload = _read_checkpoint(path)
        try:
            model.module.load_state_dict(payload["module"])
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            state = TrainingState(**payload["state"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"does not fit this model and its options: {str(exc).splitlines()[0]}",
                                  where=str(path)) from None  # fmt: skip
        torch.set_rng_state(payload["torch_rng"])
        if "cuda_rng" in payload and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(payload["cuda_rng"]))
        best = path.with_name("best.pt")
        if best.exists():
            self.best_state = _read_checkpoint(best)["module"]
        return state

    def restore_best(self, model: Model) -> None:
        if self.best_state is not None:
            model.module.load_state_dict(self.best_state)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)  # load_state_dict moves to the device
    except Exception as exc:  # truncated, not a torch file, or holding objects weights_only refuses
        raise CheckpointError(f"cannot be read as a checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                              where=str(path)) from None  # fmt: skip
    if not isinstance(payload, dict) or "module" not in payload or "state" not in payload:
        raise CheckpointError("is not a recplug training checkpoint", where=str(path))
    found = payload.get("format", 1)
    if found != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"is a format-{found} checkpoint; this recplug resumes format {CHECKPOINT_FORMAT} only: "
            "start the run again without --resume",
            where=str(path),
        )
    return payload
