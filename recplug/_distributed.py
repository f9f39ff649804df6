"""Multi-process training with torch.distributed, started by ``torchrun``.

``torchrun --nproc_per_node=N -m recplug run spec.toml`` sets ``WORLD_SIZE``/``RANK``; recplug then
joins the process group (gloo on CPU, nccl on CUDA), wraps the model in
DistributedDataParallel, gives each process an interleaved share of every global batch
(``training.batch_size`` stays the global batch, so results match one process), and lets
only rank 0 write the run directory, logs and registry.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def setup() -> None:
    """Join the process group when launched by torchrun with more than one process."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """True in the process that writes files and logs (rank 0, or the only process)."""
    return rank() == 0


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` in every process."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


def teardown() -> None:
    if active():
        dist.destroy_process_group()


class LossModule(torch.nn.Module):
    """Makes a model's ``loss(batch)`` the forward pass, so DistributedDataParallel can wrap it."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.net = model.module
        self._loss = model.loss

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._loss(batch)
