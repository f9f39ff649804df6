"""Compiled loops for the CPU training step (numba, the ``recplug[fast]`` extra): short-window attention and
dropout masks.

The short-window attention of :mod:`.short_attention` computes every product over the head dimension or the
window as a broadcast multiply and a sum: each materialises ``L`` times the queries' size (five times, for the
seed's window) before summing it away, and each step is a pass over memory. Its loops here keep one row of
scores per query in cache instead and make one pass, the batch innermost so that the compiler vectorises over it:
the same arithmetic, to float rounding (``tests/test_short_attention.py``). The dropout masks of :mod:`.dropout`
are one loop from the generator's counter to the float mask, bit for bit the masks of its numpy fallback.

Every loop runs on the calling thread: numba's own thread pool would compete with torch's on a small machine.
:func:`available` says whether numba is installed; without it the callers keep their torch and numpy operations.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["attention_backward", "attention_forward", "available", "fill_keep_mask", "prepare", "splitmix64_words"]


@functools.cache
def available() -> bool:
    """Whether numba can be imported (once, on first use: importing it takes a third of a second, which a command
    that trains nothing should not pay)."""
    try:
        import numba  # noqa: F401
    except ImportError:  # the extra is not installed (or does not match this numpy)
        return False
    return True


@functools.cache
def prepare() -> None:
    """Compiles every loop now (or loads it from the disk cache: about half a second, most of it numba's own
    start), when numba is installed, so that the first training step does not pay for it; without numba, says
    once how to install it."""
    if not available():
        logging.getLogger("recplug").info("training on the CPU without numba: pip install 'recplug[fast]' for "
                                          "compiled attention and dropout loops (faster steps, the same results)")  # fmt: skip
        return
    single = np.ones((3, 1, 1, 1, 1), np.float32)  # one head of width 1, a window of 1, a batch of 1
    weights, out, d_qkv = np.empty((1, 1, 1, 1), np.float32), np.empty((1, 1, 1, 1), np.float32), single.copy()
    keep = np.ones((1, 1, 1, 1), np.float32)
    attention_forward(single, np.zeros((1, 1, 1), np.bool_), keep, np.float32(1), weights, weights.copy(), out)
    attention_backward(single, weights, weights, keep, out, np.float32(1), d_qkv)
    fill_keep_mask(np.uint64(0), np.uint16(1), np.float32(1), np.empty(4, np.float32))


def _compiled(function: Callable[..., None]) -> Callable[..., None]:
    """``function``, compiled by numba on its first call (and cached on disk beside this module). Call it only when
    :func:`available`."""
    compiled: Callable[..., None] | None = None

    @functools.wraps(function)
    def run(*args: Any) -> None:
        nonlocal compiled
        if compiled is None:
            from numba import njit

            compiled = njit(cache=True, nogil=True, boundscheck=False)(function)
        compiled(*args)

    return run


@_compiled
def attention_forward(qkv: np.ndarray, blocked: np.ndarray, keep: np.ndarray, scale: float, weights: np.ndarray,
                      dropped: np.ndarray, out: np.ndarray) -> None:  # fmt: skip
    """Fills ``weights`` (softmax of the scaled scores, blocked keys left out), ``dropped`` (``weights * keep``;
    pass ``weights`` itself and an empty ``keep`` for no dropout) and ``out`` ``[H, d, L, B]``.

    ``qkv`` ``[3, H, d, L, B]``; ``blocked`` ``[query, key, B]`` or ``[query, key, 1]`` (every example alike);
    ``keep`` ``[H, query, key, B]``; ``weights`` and ``dropped`` ``[H, query, key, B]``.
    """
    _, heads, head_dim, length, batch = qkv.shape
    per_example = blocked.shape[2] != 1
    use_keep = keep.shape[0] != 0
    top = np.empty(batch, qkv.dtype)
    total = np.empty(batch, qkv.dtype)
    for h in range(heads):
        for i in range(length):
            row = weights[h, i]  # [key, B]: the scores, then their softmax
            top[:] = -np.inf
            for j in range(length):
                s = row[j]
                if not per_example and blocked[i, j, 0]:
                    s[:] = -np.inf
                    continue
                s[:] = 0
                for d in range(head_dim):
                    q, k = qkv[0, h, d, i], qkv[1, h, d, j]
                    for b in range(batch):
                        s[b] += q[b] * k[b]
                if per_example:
                    out_of_sight = blocked[i, j]
                    for b in range(batch):
                        s[b] = -np.inf if out_of_sight[b] else s[b] * scale
                else:
                    for b in range(batch):
                        s[b] *= scale
                for b in range(batch):
                    top[b] = max(top[b], s[b])
            total[:] = 0
            for j in range(length):
                s = row[j]
                if not per_example and blocked[i, j, 0]:
                    s[:] = 0
                    continue
                for b in range(batch):
                    s[b] = np.exp(s[b] - top[b])
                    total[b] += s[b]
            for j in range(length):
                s = row[j]
                for b in range(batch):
                    s[b] /= total[b]
                if use_keep:
                    kept, mask = dropped[h, i, j], keep[h, i, j]
                    for b in range(batch):
                        kept[b] = s[b] * mask[b]
            for d in range(head_dim):
                o = out[h, d, i]
                o[:] = 0
                for j in range(length):
                    w, v = dropped[h, i, j], qkv[2, h, d, j]
                    for b in range(batch):
                        o[b] += w[b] * v[b]


@_compiled
def attention_backward(qkv: np.ndarray, weights: np.ndarray, dropped: np.ndarray, keep: np.ndarray,
                       d_out: np.ndarray, scale: float, d_qkv: np.ndarray) -> None:  # fmt: skip
    """Fills ``d_qkv`` ``[3, H, d, L, B]`` from the output's gradient ``d_out`` ``[H, d, L, B]`` and what
    :func:`attention_forward` filled (``keep`` empty: no dropout)."""
    _, heads, head_dim, length, batch = qkv.shape
    use_keep = keep.shape[0] != 0
    d_scores = np.empty((length, batch), qkv.dtype)  # one query's row
    inner = np.empty(batch, qkv.dtype)
    for h in range(heads):
        for d in range(head_dim):  # values: sum over queries of dropped weight x output gradient
            for j in range(length):
                o = d_qkv[2, h, d, j]
                o[:] = 0
                for i in range(length):
                    w, g = dropped[h, i, j], d_out[h, d, i]
                    for b in range(batch):
                        o[b] += w[b] * g[b]
        for i in range(length):
            for j in range(length):  # the gradient of the dropped weights, then of the weights
                t = d_scores[j]
                t[:] = 0
                for d in range(head_dim):
                    g, v = d_out[h, d, i], qkv[2, h, d, j]
                    for b in range(batch):
                        t[b] += g[b] * v[b]
                if use_keep:
                    mask = keep[h, i, j]
                    for b in range(batch):
                        t[b] *= mask[b]
            inner[:] = 0  # the softmax's backward: (dw - sum_j dw_j w_j) w, times the scale
            for j in range(length):
                t, w = d_scores[j], weights[h, i, j]
                for b in range(batch):
                    inner[b] += t[b] * w[b]
            for j in range(length):
                t, w = d_scores[j], weights[h, i, j]
                for b in range(batch):
                    t[b] = (t[b] - inner[b]) * w[b] * scale
            for d in range(head_dim):  # the query's gradient, and its share of every key's
                o, q = d_qkv[0, h, d, i], qkv[0, h, d, i]
                o[:] = 0
                for j in range(length):
                    t, k, dk = d_scores[j], qkv[1, h, d, j], d_qkv[1, h, d, j]
                    for b in range(batch):
                        o[b] += t[b] * k[b]
                    if i == 0:
                        for b in range(batch):
                            dk[b] = t[b] * q[b]
                    else:
                        for b in range(batch):
                            dk[b] += t[b] * q[b]


_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64 (Steele, Lea and Flood, OOPSLA 2014): the counter's step
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def splitmix64_words(seed: int, count: int) -> np.ndarray:
    """The first ``count`` outputs of SplitMix64 from ``seed`` (word ``w`` mixes ``seed + (w + 1) * gamma``),
    with numpy: what :func:`fill_keep_mask` draws, for when numba is absent."""
    z = np.arange(1, count + 1, dtype=np.uint64) * _GAMMA + np.uint64(seed)
    z ^= z >> np.uint64(30)
    z *= _MIX_1
    z ^= z >> np.uint64(27)
    z *= _MIX_2
    z ^= z >> np.uint64(31)
    return z


@_compiled
def fill_keep_mask(seed: np.uint64, dropped: np.uint16, scale: np.float32, out: np.ndarray) -> None:
    """Fills the flat float32 ``out`` with a dropout mask: element ``i`` takes the 16 bits ``i % 4`` (from the
    low end, on a little-endian machine) of SplitMix64's word ``i // 4`` and is ``scale`` where they are
    ``>= dropped``, else 0. (Two simple loops, which the compiler vectorises, rather than one that does both.)"""
    n = out.shape[0]
    words = np.empty((n + 3) // 4, np.uint64)
    for w in range(words.shape[0]):
        z = np.uint64(w + 1) * _GAMMA + seed
        z = (z ^ (z >> np.uint64(30))) * _MIX_1
        z = (z ^ (z >> np.uint64(27))) * _MIX_2
        words[w] = z ^ (z >> np.uint64(31))
    bits = words.view(np.uint16)
    zero = np.float32(0)
    for i in range(n):
        out[i] = scale if bits[i] >= dropped else zero
