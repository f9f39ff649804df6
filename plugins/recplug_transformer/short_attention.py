"""Self-attention over short windows on the CPU, with the batch as the innermost dimension.

With a window of a few items (the seed's five), attention is thousands of tiny matrix products: torch's batched
matrix product pays per matrix, its softmax per row of five, and moving the heads out of the way costs copies of
5-dimensional tensors with 8-float rows. Here the tower keeps its activations sequence-first, ``[L, B, D]``, so
the fused projection ``W x^T`` comes out as queries, keys and values laid out ``[heads, head_dim, L, B]`` with no
copy. Every product over the head dimension or the window is then a broadcast multiply and a sum whose innermost
dimension is the batch, each vectorised over a whole tensor, the softmax is a handful of whole-tensor
operations, and the output ``[D, L, B]`` goes into the output projection as it is. The backward pass is written
out, so autograd records one node instead of a dozen.

With numba (``recplug[fast]``) the forward and backward passes run as compiled loops instead
(:mod:`.cpu_kernels`): the same arithmetic, in one pass over memory.

The same function as ``scaled_dot_product_attention`` with dropout on the attention weights (to float rounding;
``tests/test_short_attention.py``). The broadcast products hold ``L`` times the queries' size, so this pays for
short windows and narrow heads only: :func:`serves`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import cpu_kernels as kernels
from .dropout import keep_mask

SHORT_WINDOW = 12
"""The longest window the sequence-first path serves on the CPU; longer ones use torch's attention."""
SHORT_HEAD_DIM = 8
"""The widest head it serves: wider heads make torch's batched products efficient enough. Both limits measured:
training a 2-block tower alternately on either path (2-core AMD EPYC), heads of 8 gained 1.04-1.30x at windows of
5-12 and lost at 16 and beyond (0.89x at 16, 0.68x at 32); heads of 16 or 32 were level at 5 and lost beyond.
(Swept with the tensor operations; the compiled loops of ``recplug[fast]`` have not been swept.)"""


def serves(length: int, head_dim: int, device: torch.device) -> bool:
    """Whether a window of ``length`` items with heads of ``head_dim`` takes the sequence-first path."""
    return device.type == "cpu" and length <= SHORT_WINDOW and head_dim <= SHORT_HEAD_DIM


def blocked_keys(allowed: torch.Tensor | None, causal: bool, length: int,
                 device: torch.device) -> torch.Tensor | None:  # fmt: skip
    """Which keys each query may not see, ``[query, key, B]`` (or ``[query, key, 1]``), contiguous, from the
    batch-first mask ``allowed`` ``[B, 1, L, L]`` (None: no padding, so every key, or every earlier one when
    ``causal``). None: every query sees every key. Made once a batch, for every block."""
    if allowed is not None:
        return (~allowed[:, 0]).permute(1, 2, 0).contiguous()
    if causal:
        return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)[:, :, None]
    return None


def short_window_attention(qkv: torch.Tensor, blocked: torch.Tensor | None, dropout_p: float) -> torch.Tensor:
    """Attention output ``[H, d, L, B]`` from queries, keys and values ``qkv`` ``[3, H, d, L, B]``; ``blocked``
    from :func:`blocked_keys`; ``dropout_p``: dropout on the attention weights."""
    _, heads, _, length, batch = qkv.shape
    keep = keep_mask((heads, length, length, batch), dropout_p) if dropout_p > 0 else None
    return _ShortWindowAttention.apply(qkv.float(), blocked, keep)  # float32 under autocast too, as its softmax


class _ShortWindowAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d), blocked keys left out) times the dropout mask ``keep``, times v."""

    @staticmethod
    def forward(ctx: Any, qkv: torch.Tensor, blocked: torch.Tensor | None, keep: torch.Tensor | None) -> torch.Tensor:
        scale = qkv.shape[2] ** -0.5
        ctx.scale = scale
        if kernels.available():
            return _compiled_forward(ctx, qkv, blocked, keep, scale)
        q, k, v = qkv  # [H, d, L, B] each
        scores = (q[:, :, :, None] * k[:, :, None]).sum(1).mul_(scale)  # [H, query, key, B]
        if blocked is not None:
            scores.masked_fill_(blocked, float("-inf"))
        scores.sub_(scores.amax(2, keepdim=True)).exp_()
        weights = scores.div_(scores.sum(2, keepdim=True))
        dropped = weights * keep if keep is not None else weights
        ctx.save_for_backward(qkv, weights, dropped, keep)
        return (dropped[:, None] * v[:, :, None]).sum(3)  # [H, d, query, B]

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        qkv, weights, dropped, keep = ctx.saved_tensors
        d_out = d_out.contiguous()  # the output projection's backward hands it over transposed
        d_qkv = torch.empty_like(qkv)
        if kernels.available():
            kernels.attention_backward(_array(qkv), _array(weights), _array(dropped), _array(keep), _array(d_out),
                                       _array(qkv).dtype.type(ctx.scale), d_qkv.numpy())  # fmt: skip
            return d_qkv, None, None
        q, k, v = qkv
        d_dropped = (d_out[:, :, :, None] * v[:, :, None]).sum(1)  # [H, query, key, B]
        torch.sum(dropped[:, None] * d_out[:, :, :, None], 2, out=d_qkv[2])  # values
        d_weights = d_dropped.mul_(keep) if keep is not None else d_dropped
        d_scores = d_weights.sub_((d_weights * weights).sum(2, keepdim=True)).mul_(weights).mul_(ctx.scale)
        torch.sum(d_scores[:, None] * k[:, :, None], 3, out=d_qkv[0])  # queries
        torch.sum(d_scores[:, None] * q[:, :, :, None], 2, out=d_qkv[1])  # keys
        return d_qkv, None, None


def _compiled_forward(ctx: Any, qkv: torch.Tensor, blocked: torch.Tensor | None, keep: torch.Tensor | None,
                      scale: float) -> torch.Tensor:  # fmt: skip
    """:meth:`_ShortWindowAttention.forward` by :func:`.cpu_kernels.attention_forward`."""
    heads, head_dim, length, batch = qkv.shape[1:]
    qkv = qkv.contiguous()
    if blocked is None:
        blocked = torch.zeros(length, length, 1, dtype=torch.bool)
    weights = qkv.new_empty(heads, length, length, batch)
    dropped = torch.empty_like(weights) if keep is not None else weights
    out = qkv.new_empty(heads, head_dim, length, batch)
    kernels.attention_forward(_array(qkv), _array(blocked), _array(keep), _array(qkv).dtype.type(scale),
                              weights.numpy(), dropped.numpy(), out.numpy())  # fmt: skip
    ctx.save_for_backward(qkv, weights, dropped, keep)
    return out


def _array(tensor: torch.Tensor | None) -> np.ndarray:
    """A view of ``tensor`` for the kernels (an empty array for no dropout mask)."""
    return tensor.detach().numpy() if tensor is not None else np.empty((0, 0, 0, 0), np.float32)
