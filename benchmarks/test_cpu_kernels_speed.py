"""The compiled CPU loops (``recplug[fast]``) against the operations they replace, at the seed configuration's
sizes: short-window attention forward and backward (4 heads of 8, windows of 5, batch 512, dropout 0.1, causal)
and a dropout mask of a block's activations (512 x 5 x 32). Both run alternately in one session; the ratios and
the agreement of the results are asserted on every run (CI included)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch

from recplug_transformer import cpu_kernels
from recplug_transformer.dropout import keep_mask
from recplug_transformer.short_attention import blocked_keys, short_window_attention

HEADS, HEAD_DIM, WINDOW, BATCH, DROPOUT = 4, 8, 5, 512, 0.1
MIN_ATTENTION_SPEEDUP = 1.3
MIN_MASK_SPEEDUP = 3.0
ROUNDS = 30


pytestmark = pytest.mark.usefixtures("numba_loops")


def _alternating(work: Callable[[], object], monkeypatch: pytest.MonkeyPatch) -> dict[bool, float]:
    """Best seconds of ``work`` with the compiled loops (True) and without (False), alternating round by round."""
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(ROUNDS + 1):  # the first round a warm-up
        for compiled in (True, False) if round_ % 2 else (False, True):
            monkeypatch.setattr(cpu_kernels, "available", lambda compiled=compiled: compiled)
            started = time.perf_counter()
            work()
            if round_:
                seconds[compiled].append(time.perf_counter() - started)
    return {compiled: min(times) for compiled, times in seconds.items()}


def _attention_and_gradient(qkv: torch.Tensor, blocked: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    x = qkv.clone().requires_grad_()
    out = short_window_attention(x, blocked, DROPOUT)
    out.backward(torch.linspace(-1, 1, out.numel()).view(out.shape))
    return out.detach(), x.grad


@pytest.mark.benchmark(group="cpu kernels")
def test_compiled_short_window_attention_is_faster(benchmark, monkeypatch) -> None:
    qkv = torch.randn(3, HEADS, HEAD_DIM, WINDOW, BATCH, generator=torch.Generator().manual_seed(0))
    blocked = blocked_keys(None, True, WINDOW, qkv.device)
    best = _alternating(lambda: _attention_and_gradient(qkv, blocked), monkeypatch)
    monkeypatch.setattr(cpu_kernels, "available", lambda: True)
    torch.manual_seed(1)  # the same dropout masks on both paths
    compiled = benchmark.pedantic(_attention_and_gradient, args=(qkv, blocked), rounds=1)
    monkeypatch.setattr(cpu_kernels, "available", lambda: False)
    torch.manual_seed(1)
    for got, expected in zip(compiled, _attention_and_gradient(qkv, blocked), strict=True):
        torch.testing.assert_close(got, expected)
    speedup = best[False] / best[True]
    benchmark.extra_info["speedup"] = speedup
    print(f"\nattention forward and backward: compiled {best[True] * 1e6:.0f} us, tensor operations "
          f"{best[False] * 1e6:.0f} us (best of {ROUNDS}): {speedup:.2f}x")  # fmt: skip
    assert speedup >= MIN_ATTENTION_SPEEDUP


@pytest.mark.benchmark(group="cpu kernels")
def test_compiled_dropout_masks_are_faster(benchmark, monkeypatch) -> None:
    def mask() -> torch.Tensor:
        return keep_mask((WINDOW, BATCH, HEADS * HEAD_DIM), DROPOUT)

    best = _alternating(mask, monkeypatch)
    monkeypatch.setattr(cpu_kernels, "available", lambda: True)
    torch.manual_seed(2)  # the same seed for both masks
    compiled = benchmark.pedantic(mask, rounds=1)
    monkeypatch.setattr(cpu_kernels, "available", lambda: False)
    torch.manual_seed(2)
    assert torch.equal(compiled, mask())
    speedup = best[False] / best[True]
    benchmark.extra_info["speedup"] = speedup
    print(f"\ndropout mask: compiled {best[True] * 1e6:.0f} us, numpy {best[False] * 1e6:.0f} us (best of {ROUNDS}): "
          f"{speedup:.2f}x")  # fmt: skip
    assert speedup >= MIN_MASK_SPEEDUP
