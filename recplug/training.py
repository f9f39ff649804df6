"""The generic training loop for torch models (any :class:`~recplug.interfaces.Model` plugin).

Adam(W) with optional warm-up and cosine/linear decay, gradient clipping, early
stopping on validation loss or NDCG@10, best/last checkpoints with resume, AMP on
CUDA, optional ``torch.compile``, tensorboard scalars and tqdm progress bars.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs
import numpy as np
import torch
from tqdm import tqdm

from . import distributed
from .devices import resolve_device
from .errors import RecplugError

if TYPE_CHECKING:
    from .interfaces import ExampleSource, Model, RunContext
    from .split import EvalCases, TrainView

log = logging.getLogger("recplug.training")


@attrs.frozen
class TrainingOptions:
    epochs: int = attrs.field(default=10, validator=attrs.validators.ge(1), metadata={"doc": "Passes over the training examples."})
    batch_size: int = attrs.field(default=512, validator=attrs.validators.ge(1), metadata={"doc": "Examples per step."})
    lr: float = attrs.field(default=1e-3, validator=attrs.validators.gt(0.0), metadata={"doc": "Peak learning rate."})
    weight_decay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0), metadata={"doc": "AdamW weight decay."})
    betas: list[float] = attrs.field(factory=lambda: [0.9, 0.999], metadata={"doc": "Adam betas."})
    schedule: Literal["constant", "cosine", "linear"] = attrs.field(
        default="constant", metadata={"doc": "Learning-rate decay after warm-up."}
    )
    warmup_steps: int = attrs.field(default=0, validator=attrs.validators.ge(0), metadata={"doc": "Linear warm-up steps."})
    grad_clip: float | None = attrs.field(default=1.0, metadata={"doc": "Max gradient norm (none: no clipping)."})
    monitor: Literal["loss", "ndcg@10"] = attrs.field(
        default="loss", metadata={"doc": "Validation measure for early stopping and best checkpoint."}
    )
    patience: int | None = attrs.field(
        default=None, metadata={"doc": "Stop after this many epochs without improvement (none: never stop early)."}
    )
    validation_cases: int = attrs.field(
        default=20_000, validator=attrs.validators.ge(1), metadata={"doc": "At most this many validation cases per epoch."}
    )
    max_steps_per_epoch: int | None = attrs.field(
        default=None, metadata={"doc": "Cap on steps per epoch (quick runs and tests)."}
    )
    amp: bool = attrs.field(default=True, metadata={"doc": "bf16 autocast on CUDA (ignored on CPU)."})
    compile: bool = attrs.field(default=False, metadata={"doc": "Wrap the module with torch.compile."})
    num_threads: int | None = attrs.field(default=None, metadata={"doc": "torch CPU threads (default: torch's)."})


def train_model(model: Model, train: TrainView, validation: EvalCases, context: RunContext) -> dict[str, float]:
    """Train ``model.module`` in place; leaves the best weights loaded. Returns the final summary."""
    opts = model.training
    if opts.num_threads:
        torch.set_num_threads(opts.num_threads)
    device = resolve_device(context.device)
    model.to(device)
    torch.manual_seed(context.seed)
    examples = model.training_examples(train)
    val_examples = model.validation_examples(train.data, validation)
    val_cases = _subsample(validation, opts.validation_cases, context.seed)

    world, rank = distributed.world_size(), distributed.rank()
    if opts.batch_size % world:
        from .errors import SpecError

        raise SpecError(f"batch_size {opts.batch_size} must be divisible by the {world} processes", where="training.batch_size")
    steps_per_epoch = math.ceil(len(examples) / opts.batch_size)
    if world > 1 and len(examples) % opts.batch_size and len(examples) % opts.batch_size < world:
        steps_per_epoch -= 1  # a final batch too small to give every process a share
    if opts.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, opts.max_steps_per_epoch)
    total_steps = steps_per_epoch * opts.epochs
    optimizer, scheduler = _optimizer_and_schedule(model, opts, total_steps)
    checkpoints = Checkpoints(Path(context.run_dir) / "checkpoints" if context.run_dir and rank == 0 else None)
    state = {"epoch": 0, "step": 0, "best": None, "bad_epochs": 0, "step_in_epoch": 0, "epoch_seen": 0, "epoch_loss": 0.0}
    resume_from = Checkpoints(Path(context.run_dir) / "checkpoints") if context.run_dir else checkpoints
    if context.resume and (resumed := resume_from.load("last", model, optimizer, scheduler)):
        checkpoints.best_state = resume_from.best_state
        state.update(resumed)
        log.info("resumed from epoch %d", state["epoch"])
    step_fn = torch.compile(model.loss) if opts.compile else model.loss
    if world > 1:  # DistributedDataParallel averages the gradients of every process's share
        from torch.nn.parallel import DistributedDataParallel

        step_fn = DistributedDataParallel(distributed.LossModule(model), device_ids=[device.index] if device.type == "cuda" else None)
    autocast = device.type == "cuda" and opts.amp
    writer = _tensorboard(context) if rank == 0 else None

    stop = StopRequest()
    for epoch in range(state["epoch"], opts.epochs):
        model.module.train()
        order = np.random.default_rng([context.seed, epoch]).permutation(len(examples))
        started, seen, total_loss = time.perf_counter(), state["epoch_seen"], state["epoch_loss"]
        quiet = None if log.isEnabledFor(logging.INFO) else True  # None: only on a terminal
        steps = range(state["step_in_epoch"], steps_per_epoch)
        bar = tqdm(steps, desc=f"epoch {epoch + 1}/{opts.epochs}", leave=False, disable=quiet)
        for i in bar:
            batch = examples.batch(order[i * opts.batch_size : (i + 1) * opts.batch_size][rank::world])
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = step_fn(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if opts.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.module.parameters(), opts.grad_clip)
            optimizer.step()
            scheduler.step()
            state["step"] += 1
            n = len(next(iter(batch.values()))) * world
            seen += n
            total_loss += loss.item() * n
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", samples_s=f"{seen / (time.perf_counter() - started):.0f}")
            if stop.requested:  # Ctrl-C: finish this step, keep a checkpoint of exactly here, stop
                state.update(step_in_epoch=i + 1, epoch_seen=seen, epoch_loss=total_loss)
                checkpoints.save("last", model, optimizer, scheduler, state)
                stop.restore()
                raise TrainingInterrupted(
                    f"interrupted after step {i + 1} of epoch {epoch + 1}; checkpoint saved. "
                    f"Continue with: recplug run --resume {Path(context.run_dir).parent.parent if context.run_dir else 'RUN_DIR'}"
                )
        train_time = time.perf_counter() - started
        summary = {"loss/train": total_loss / max(seen, 1), "throughput/samples_per_s": seen / train_time,
                   "lr": scheduler.get_last_lr()[0]}
        summary.update(validate(model, val_examples, val_cases, opts.batch_size, train))
        measure = _monitored(summary, opts.monitor)
        improved = state["best"] is None or measure < state["best"]
        state.update(epoch=epoch + 1, best=measure if improved else state["best"],
                     bad_epochs=0 if improved else state["bad_epochs"] + 1, step_in_epoch=0, epoch_seen=0,
                     epoch_loss=0.0)  # fmt: skip
        if improved:
            checkpoints.save("best", model, optimizer, scheduler, state)
        checkpoints.save("last", model, optimizer, scheduler, state)
        if rank == 0:
            _report_epoch(writer, summary, epoch + 1, opts.epochs, train_time, improved)
        if opts.patience is not None and state["bad_epochs"] >= opts.patience:
            log.info("early stop: no improvement for %d epochs", opts.patience)
            break
    stop.restore()
    if writer:
        writer.close()
    checkpoints.restore_best(model)
    model.module.eval()
    return summary


@torch.no_grad()
def validate(model: Model, examples: ExampleSource | None, cases: EvalCases, batch_size: int, train: TrainView) -> dict[str, float]:
    """Validation loss (when the model offers validation examples) and NDCG@10 / HR@10 on ``cases``."""
    from .evaluation import rank_cases

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


class TrainingInterrupted(RecplugError):
    """Training was stopped by Ctrl-C after a step; the last checkpoint holds exactly that step."""

    exit_code = 130


class StopRequest:
    """Turns the first Ctrl-C (SIGINT) into a request to stop after the current step; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping after the current step (Ctrl-C again to abort at once)")

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _monitored(summary: dict[str, float], monitor: str) -> float:
    """The validation measure to minimise; models without validation examples fall back to -NDCG@10."""
    loss = summary["loss/validation"]
    if monitor == "loss" and not math.isnan(loss):
        return loss
    return -summary.get("validation/ndcg@10", 0.0)


def _subsample(cases: EvalCases, limit: int, seed: int) -> EvalCases:
    if len(cases) <= limit:
        return cases
    index = np.sort(np.random.default_rng(seed).choice(len(cases), size=limit, replace=False))
    return cases.subset(index)


def _optimizer_and_schedule(model: Model, opts: TrainingOptions, total_steps: int):
    """AdamW over the module's parameters and a per-step LambdaLR (warm-up, then constant/cosine/linear)."""
    optimizer = torch.optim.AdamW(
        model.module.parameters(), lr=opts.lr, betas=tuple(opts.betas), weight_decay=opts.weight_decay
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(opts, total_steps))


def _report_epoch(writer, summary: dict[str, float], epoch: int, epochs: int, train_time: float, improved: bool) -> None:
    """Tensorboard scalars of the epoch and its one-line summary in the log (``*``: a new best)."""
    if writer:
        for key, value in summary.items():
            writer.add_scalar(key, value, epoch)
        writer.flush()
    log.info(
        "epoch %d/%d  train loss %.4f  val loss %.4f  val ndcg@10 %.4f  %.0f samples/s  %.1fs%s",
        epoch, epochs, summary["loss/train"], summary["loss/validation"], summary.get("validation/ndcg@10", float("nan")),
        summary["throughput/samples_per_s"], train_time, "  *" if improved else "",
    )  # fmt: skip


def _lr_lambda(opts: TrainingOptions, total_steps: int):
    def factor(step: int) -> float:
        if step < opts.warmup_steps:
            return (step + 1) / opts.warmup_steps
        progress = (step - opts.warmup_steps) / max(1, total_steps - opts.warmup_steps)
        if opts.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if opts.schedule == "linear":
            return max(0.0, 1 - progress)
        return 1.0

    return factor


def _tensorboard(context: RunContext):
    if not context.run_dir:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(Path(context.run_dir) / "tensorboard"))


class Checkpoints:
    """``best.pt`` and ``last.pt`` in one folder, written atomically, read with ``weights_only=True``."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.best_state: dict[str, torch.Tensor] | None = None

    def save(self, name: str, model: Model, optimizer, scheduler, state: dict) -> None:
        if name == "best":
            self.best_state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "module": model.module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "state": {k: v for k, v in state.items()},
            "torch_rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            payload["cuda_rng"] = torch.stack(torch.cuda.get_rng_state_all())
        tmp = self.folder / f".{name}.pt.tmp"
        torch.save(payload, tmp)
        tmp.replace(self.folder / f"{name}.pt")

    def load(self, name: str, model: Model, optimizer, scheduler) -> dict | None:
        path = self.folder / f"{name}.pt" if self.folder else None
        if path is None or not path.exists():
            return None
        payload = torch.load(path, map_location="cpu", weights_only=True)  # load_state_dict moves to the device
        model.module.load_state_dict(payload["module"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["torch_rng"])
        if "cuda_rng" in payload and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(payload["cuda_rng"]))
        best = self.folder / "best.pt"
        if best.exists():
            self.best_state = torch.load(best, map_location="cpu", weights_only=True)["module"]
        return payload["state"]

    def restore_best(self, model: Model) -> None:
        if self.best_state is not None:
            model.module.load_state_dict(self.best_state)
