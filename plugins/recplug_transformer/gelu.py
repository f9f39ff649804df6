"""GPT-2's tanh GELU, computed on the CPU as ``x * sigmoid(2u)`` with its backward written out.

``0.5 x (1 + tanh(u)) = x * sigmoid(2u)``, ``u = sqrt(2/pi) (x + 0.044715 x^3)``: the same function (to float
rounding). torch's CPU kernels for it (and for ``tanh``) take 2.5x the time of this sequence of whole-tensor
operations, forward and backward together (``docs/results.rst``); elsewhere, and in reduced precision, it is
torch's own ``gelu(approximate="tanh")``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_TWO_C = 2 * math.sqrt(2 / math.pi)  # 2u = _TWO_C * (x + _A * x^3)
_A = 0.044715


class TanhGELU(nn.Module):
    """``nn.GELU(approximate="tanh")``, faster on the CPU in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32:
            return _TanhGELU.apply(x)
        return F.gelu(x, approximate="tanh")


class _TanhGELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        s = x * x
        s.mul_(_TWO_C * _A).add_(_TWO_C).mul_(x).sigmoid_()  # sigmoid(2u)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx: Any, d_y: torch.Tensor) -> torch.Tensor:
        # d/dx x sigmoid(2u) = s + x s (1 - s) 2u'(x), with 2u'(x) = _TWO_C (1 + 3 _A x^2)
        x, s = ctx.saved_tensors
        g = x * x
        g.mul_(3 * _TWO_C * _A).add_(_TWO_C).mul_(x)  # x 2u'(x)
        return g.addcmul_(g, s, value=-1).add_(1).mul_(s).mul_(d_y)  # (1 + x 2u' (1 - s)) s d_y
