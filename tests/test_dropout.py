"""The transformer plugin's CPU dropout (SplitMix64 masks, compiled or with numpy) and attention with dropout: the
same operations as torch's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recplug_transformer import cpu_kernels
from recplug_transformer.dropout import Dropout, dropout, keep_mask
from recplug_transformer.modules import _attention_with_dropout


@pytest.mark.usefixtures("cpu_kernels")
@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_dropout_zeroes_a_share_p_and_keeps_the_mean(p: float) -> None:
    x = torch.ones(400_000, requires_grad=True)
    y = dropout(x, p, training=True)
    kept = y > 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)), rtol=1e-4, atol=0)
    assert abs(y.mean().item() - 1.0) < 0.01
    y.sum().backward()  # the gradient is the mask times the scale
    assert torch.equal(x.grad, y.detach())


def test_dropout_just_below_one_stays_finite() -> None:
    y = dropout(torch.ones(200_000), 0.999999, training=True)
    assert torch.isfinite(y).all() and 0 < int((y > 0).sum()) < 50


@pytest.mark.usefixtures("cpu_kernels")
def test_dropout_masks_follow_torch_seed_and_vary_between_calls() -> None:
    x = torch.randn(10_000)
    torch.manual_seed(3)
    first, second = dropout(x, 0.3, True), dropout(x, 0.3, True)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.3, True), first)
    assert not torch.equal(first, second)


@pytest.mark.usefixtures("numba_loops")
@pytest.mark.parametrize("shape", [(5, 512, 32), (4, 5, 5, 512), (7,), (3, 1), (0,)])
def test_compiled_masks_are_the_numpy_masks_bit_for_bit(monkeypatch: pytest.MonkeyPatch,
                                                        shape: tuple[int, ...]) -> None:  # fmt: skip
    """Installing numba (``recplug[fast]``) changes no mask: a fixed seed trains the same either way."""
    masks = []
    for compiled in (True, False):
        monkeypatch.setattr(cpu_kernels, "available", lambda compiled=compiled: compiled)
        torch.manual_seed(11)
        masks.append(keep_mask(shape, 0.2))
    assert masks[0].shape == shape and masks[0].dtype == torch.float32
    assert torch.equal(masks[0], masks[1])


def test_splitmix64_gives_its_published_outputs() -> None:
    """The first outputs of SplitMix64 seeded with 1234567 (the reference implementation's test vector)."""
    expected = [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
                16408922859458223821]  # fmt: skip
    assert cpu_kernels.splitmix64_words(1234567, 5).tolist() == expected


def test_dropout_is_the_identity_when_evaluating_or_at_zero() -> None:
    x = torch.randn(100)
    layer = Dropout(0.5).eval()
    assert layer(x) is x and dropout(x, 0.0, True) is x


@pytest.mark.parametrize("kind", ["causal", "masked", "bidirectional"])
def test_attention_without_dropout_equals_scaled_dot_product_attention(kind: str) -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 7, 8) for _ in range(3))
    mask = torch.rand(3, 1, 7, 7) < 0.7 if kind == "masked" else None
    if mask is not None:
        mask |= torch.eye(7, dtype=torch.bool)  # every query sees at least itself
    ours = _attention_with_dropout(q, k, v, mask, causal=kind == "causal", p=0.0)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=kind == "causal")
    torch.testing.assert_close(ours, theirs)


def test_training_on_the_cpu_without_numba_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    monkeypatch.setattr(cpu_kernels, "available", lambda: False)
    cpu_kernels.prepare.cache_clear()
    with caplog.at_level("INFO", logger="recplug"):
        cpu_kernels.prepare()
        cpu_kernels.prepare()  # once a process
    cpu_kernels.prepare.cache_clear()
    hints = [r.getMessage() for r in caplog.records if "recplug[fast]" in r.getMessage()]
    assert len(hints) == 1 and "pip install 'recplug[fast]'" in hints[0]
