"""The CPU fast paths of the transformer's blocks: short-window attention (sequence-first, written-out backward;
as tensor operations and as compiled loops) and the tanh GELU as ``x * sigmoid(2u)``; each the same function,
with the same gradients, as torch's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recplug_transformer import gelu, modules, short_attention
from recplug_transformer.modules import CausalSelfAttention, MovieTower, _causal_padding_mask, _padding_mask
from recplug_transformer.short_attention import _ShortWindowAttention, blocked_keys, short_window_attention

KINDS = ["causal", "causal_padded", "bidirectional", "bidirectional_padded"]

pytestmark = pytest.mark.usefixtures("cpu_kernels")  # every test on the compiled loops and on tensor operations


def _padding(batch: int, length: int) -> torch.Tensor:
    """``is_pad`` ``[B, L]``: left padding of 0 to L - 1 positions per row."""
    starts = torch.arange(batch) % length
    return torch.arange(length)[None, :] < starts[:, None]


def _case(kind: str, batch: int = 6, length: int = 5) -> tuple[torch.Tensor, bool]:
    is_pad = _padding(batch, length) if kind.endswith("padded") else torch.zeros(batch, length, dtype=torch.bool)
    return is_pad, kind.startswith("causal")


def _mask(is_pad: torch.Tensor, causal: bool) -> torch.Tensor | None:
    """The batch-first mask of the tower: ``[B, 1, L, L]``, True where a query may see a key."""
    return _causal_padding_mask(is_pad) if causal else _padding_mask(is_pad)


def _blocked(is_pad: torch.Tensor, causal: bool) -> torch.Tensor | None:
    return blocked_keys(_mask(is_pad, causal), causal, is_pad.shape[1], is_pad.device)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_dropout", [False, True])
def test_the_written_out_backward_is_the_gradient(kind: str, with_dropout: bool) -> None:
    torch.manual_seed(0)
    heads, head_dim, length, batch = 2, 3, 5, 6
    is_pad, causal = _case(kind, batch, length)
    qkv = torch.randn(3, heads, head_dim, length, batch, dtype=torch.float64, requires_grad=True)
    keep = (torch.rand(heads, length, length, batch, dtype=torch.float64) > 0.3) / 0.7 if with_dropout else None
    blocked = _blocked(is_pad, causal)
    assert torch.autograd.gradcheck(lambda x: _ShortWindowAttention.apply(x, blocked, keep), (qkv,))


@pytest.mark.parametrize("kind", KINDS)
def test_sequence_first_attention_equals_torchs_with_its_gradients(kind: str) -> None:
    torch.manual_seed(1)
    batch, length, dim = 7, 6, 8
    is_pad, causal = _case(kind, batch, length)
    layer = CausalSelfAttention(dim, heads=2, attention_dropout=0.0, residual_dropout=0.0, causal=causal)
    x = torch.randn(batch, length, dim)
    mask = _mask(is_pad, causal)
    results = []
    for run in (lambda x: layer(x, mask), lambda x: layer.forward_sequence_first(x.transpose(0, 1).contiguous(),
                                                                                 _blocked(is_pad, causal)).transpose(0, 1)):  # fmt: skip
        layer.zero_grad()
        x_ = x.clone().requires_grad_()
        y = run(x_)
        (y * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum().backward()
        results.append((y, x_.grad, layer.qkv.weight.grad, layer.proj.weight.grad))
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected)


def test_attention_dropout_multiplies_the_weights_by_the_mask() -> None:
    torch.manual_seed(2)
    heads, head_dim, length, batch = 2, 4, 5, 3
    qkv = torch.randn(3, heads, head_dim, length, batch)
    torch.manual_seed(5)
    dropped = short_window_attention(qkv, _blocked(torch.zeros(batch, length, dtype=torch.bool), True), 0.5)
    torch.manual_seed(5)
    keep = short_attention.keep_mask((heads, length, length, batch), 0.5)  # the same draw
    q, k, v = (t.permute(3, 0, 2, 1) for t in qkv)  # [B, H, L, d]
    weights = torch.softmax((q @ k.transpose(-1, -2) * head_dim**-0.5).masked_fill(
        torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf")), -1)  # fmt: skip
    expected = (weights * keep.permute(3, 0, 1, 2)) @ v  # [B, H, L, d]
    torch.testing.assert_close(dropped, expected.permute(1, 3, 2, 0))
    assert 0 < int((keep == 0).sum()) < keep.numel()


@pytest.mark.parametrize("causal", [True, False])
def test_the_tower_gives_the_same_outputs_and_gradients_on_either_path(monkeypatch, causal: bool) -> None:
    """Short windows with narrow heads run sequence-first on the CPU; the outputs and every gradient are those of the
    batch-first path (dropout off: its draws differ between the layouts)."""
    torch.manual_seed(3)
    n_items, length = 30, 7
    tower = MovieTower(modules.ItemEmbedding(n_items + 1, 16), context=10, dim=16, layers=2, heads=4,
                       embedding_dropout=0.0, attention_dropout=0.0, residual_dropout=0.0, eps=1e-5,
                       pad_token=n_items, causal=causal)  # fmt: skip
    items = torch.randint(n_items, (9, length))
    items[_padding(9, length)] = n_items
    results = []
    for window in (short_attention.SHORT_WINDOW, 0):  # the sequence-first path, then the batch-first one
        monkeypatch.setattr(short_attention, "SHORT_WINDOW", window)
        tower.zero_grad()
        out = tower(items)
        (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        results.append([out] + [p.grad.clone() for p in tower.parameters()])
    assert results[0][0].shape == (9, length, 16)
    for expected, got in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, expected)


def test_the_tanh_gelu_is_torchs_with_its_gradient() -> None:
    x = torch.linspace(-12, 12, 2001, requires_grad=True)
    y = gelu.TanhGELU()(x)
    y.backward(torch.linspace(1, 2, 2001))
    x_ = x.detach().clone().requires_grad_()
    F.gelu(x_, approximate="tanh").backward(torch.linspace(1, 2, 2001))
    torch.testing.assert_close(y, F.gelu(x_.detach(), approximate="tanh"))
    torch.testing.assert_close(x.grad, x_.grad)
    doubles = torch.randn(50, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gelu._TanhGELU.apply, (doubles,))


def test_the_sequence_first_tower_under_cpu_autocast_stays_close_to_float32() -> None:
    torch.manual_seed(4)
    tower = MovieTower(modules.ItemEmbedding(21, 16), context=5, dim=16, layers=2, heads=4, embedding_dropout=0.0,
                       attention_dropout=0.0, residual_dropout=0.0, eps=1e-5, pad_token=20)  # fmt: skip
    items = torch.randint(20, (8, 5))
    exact = tower(items)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = tower(items)
    low.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in tower.parameters() if p.grad is not None)
    torch.testing.assert_close(low.float(), exact, rtol=0.05, atol=0.05)
