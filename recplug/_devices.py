"""Choosing the torch device: CUDA, then Apple MPS, then CPU, unless the spec names one; and the CPU cores
this process may use."""

from __future__ import annotations

import os

import torch

from ._errors import SpecError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks the best available device; a named one must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpecError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)", where="experiment.device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"device {name!r} requested but CUDA is not available here; use 'auto' or 'cpu'", where="experiment.device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SpecError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist", where="experiment.device")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SpecError(f"device {name!r} requested but MPS is not available here", where="experiment.device")
    return device


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it, else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
