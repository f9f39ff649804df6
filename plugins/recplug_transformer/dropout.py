"""Dropout whose CPU masks come from SplitMix64, a counter-based generator: torch's CPU ``bernoulli_`` draws one
Mersenne-Twister number at a time, about 7x slower, and was a sixth to a fifth of a training step on the 2-core CPU.

The same operation as ``nn.Dropout`` (zero each element with probability ``p``, scale the rest so the mean is
unchanged); on other devices it is ``F.dropout``. Every mask's seed is drawn from torch's generator, so
``torch.manual_seed`` (and a checkpoint's saved RNG state) still fixes every mask. With numba (``recplug[fast]``)
a mask is one compiled loop (:func:`.cpu_kernels.fill_keep_mask`, 17 against 116 us for a 512 x 5 x 32 mask with
numpy's PCG64 before); without it, numpy computes the same words, so both give the same masks bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import cpu_kernels

LEVELS = 65536
"""The mask compares a uniform 16-bit number with ``round(p * LEVELS)``: ``p`` to within 1/131072."""


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)``, with the mask drawn by numpy on the CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * keep_mask(x.shape, p)


def keep_mask(shape: tuple[int, ...], p: float) -> torch.Tensor:
    """A float dropout mask of ``shape`` on the CPU: 0 where an element is dropped (probability ``p``),
    ``1 / (1 - p)`` where it is kept; drawn by SplitMix64 (compiled, or with numpy) from a seed that torch's
    generator gives."""
    dropped = min(round(p * LEVELS), LEVELS - 1)  # p just below 1 still keeps 1 in LEVELS (and no division by 0)
    seed = int(torch.randint(2**62, (1,)).item())
    scale = LEVELS / (LEVELS - dropped)
    n = math.prod(shape)
    if cpu_kernels.available():
        mask = torch.empty(shape)
        cpu_kernels.fill_keep_mask(np.uint64(seed), np.uint16(dropped), np.float32(scale), mask.view(-1).numpy())
        return mask
    words = cpu_kernels.splitmix64_words(seed, -(-n // 4)).astype("<u8", copy=False)
    bits = words.view("<u2")[:n]  # 16 uniform bits per element, from the low end of each word
    return torch.from_numpy(bits >= dropped).view(shape).float().mul_(scale)


class Dropout(nn.Module):
    """``nn.Dropout`` on :func:`dropout` (no parameters: checkpoints are unchanged)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
