"""The fused full-softmax loss against the plain one, forward and backward, at the size of a wide leave-one-out
batch: 64 windows of 200 positions, width 128, ML-1M's 3,706 items and padding, the items already seen before
each position left out of the softmax. Both run alternately in one session; the ratio and the agreement of the
loss and its gradients are asserted on every run (CI included)."""

from __future__ import annotations

import time

import pytest
import torch

from recplug_transformer import losses

MIN_SPEEDUP = 1.3
ROWS, WIDTH, ITEMS, SEEN_PER_ROW = 64 * 200, 128, 3707, 100
ROUNDS = 5


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(ITEMS, WIDTH, generator=generator) * 0.1
    features = torch.randn(ROWS, WIDTH, generator=generator)
    targets = torch.randint(ITEMS, (ROWS,), generator=generator)
    rows = torch.arange(ROWS).repeat_interleave(SEEN_PER_ROW)
    items = torch.randint(ITEMS, (ROWS * SEEN_PER_ROW,), generator=generator)
    keep = items != targets[rows]  # as the model gives them: a row's own target stays in
    return weight, features, targets, (rows[keep], items[keep])


def loss_and_gradients(fused: bool, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    weight, features, targets, excluded = batch
    w, f = weight.clone().requires_grad_(), features.clone().requires_grad_()

    def vectors(items: torch.Tensor | None) -> torch.Tensor:
        return w if items is None else w[items]

    if fused:
        loss = losses.full_softmax_mean(vectors, f, targets, excluded=excluded)
    else:
        loss = losses.full_softmax(vectors, f, targets, excluded=excluded).mean()
    loss.backward()
    return loss.detach(), w.grad, f.grad


@pytest.mark.benchmark(group="training loss")
def test_the_fused_softmax_loss_is_faster_than_the_plain_one(benchmark, batch) -> None:
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(ROUNDS + 1):  # alternating, the first round a warm-up
        for fused in (True, False) if round_ % 2 else (False, True):
            started = time.perf_counter()
            loss_and_gradients(fused, batch)
            if round_:
                seconds[fused].append(time.perf_counter() - started)
    results = benchmark.pedantic(loss_and_gradients, args=(True, batch), rounds=1)
    for fused, plain in zip(results, loss_and_gradients(False, batch), strict=True):
        torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-6)
    speedup = min(seconds[False]) / min(seconds[True])
    benchmark.extra_info["speedup"] = speedup
    print(f"\nfused {min(seconds[True]):.3f}s, plain {min(seconds[False]):.3f}s (best of {ROUNDS}): {speedup:.2f}x")
    assert speedup >= MIN_SPEEDUP
