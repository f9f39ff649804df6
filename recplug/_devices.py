"""Choosing the torch device: CUDA, then Apple MPS, then CPU, unless the spec names one; the CPU cores this
process may use, and how work is spread over them."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from ._errors import SpecError

Item = TypeVar("Item")
Result = TypeVar("Result")


def cpu_multiplies_bf16() -> bool:
    """Whether torch finds bfloat16 instructions on this CPU (AVX-512 BF16 or AMX tiles)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


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


def map_on_cores(work: Callable[[Item], Result], items: Iterable[Item], device: torch.device) -> Iterator[Result]:
    """``map(work, items)``, in order, on as many threads as torch's intra-op threads, each running torch on one.

    For many independent batches of inference on the CPU (bulk export, encoding every user): batches of a few
    dozen users are too small to keep several cores busy inside one operation, so whole batches go to
    separate cores instead (torch releases the GIL while it computes). On another device, or with one
    thread, it is a plain ``map``.
    """
    workers = torch.get_num_threads()
    if device.type != "cpu" or workers == 1:
        yield from map(work, items)
        return

    def on_one_thread(item: Item) -> Result:
        torch.set_num_threads(1)  # OpenMP's setting is per thread: the caller's threads are unchanged
        return work(item)

    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="recplug-cpu") as pool:
            yield from pool.map(on_one_thread, items)
    finally:  # torch also keeps a process-wide count (and MKL's) that the workers' setting changed
        torch.set_num_threads(workers)
