"""Choosing the torch device: CUDA, then Apple MPS, then CPU, unless the spec names one; and the CPU cores
this process may use."""

from __future__ import annotations

import ctypes
import os
import sys

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


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
"""glibc's ``mallopt`` parameters (malloc.h)."""


def reuse_freed_memory() -> None:
    """Keep large freed blocks in the process for reuse (glibc on Linux; elsewhere nothing changes).

    glibc gives every allocation over 32 MB its own ``mmap`` and returns it to the system when freed, so each
    training step's logits (tens of MB) arrive as fresh pages that the kernel must fault in and zero: about a
    third of a leave-one-out step on the 2-core CPU. Serving large blocks from the heap and not trimming it lets
    the next step reuse the same memory (the process keeps its peak size).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, 2**30)
    except (OSError, AttributeError):  # not glibc (musl, ...): its allocator, its defaults
        pass
