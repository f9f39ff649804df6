"""Next-item losses of the sequential models: full softmax, sampled softmax with logQ correction, BPR-max, gBCE.

Each loss takes the features of the positions being trained ``[N, H]`` and their target items ``[N]`` and
returns one loss per position ``[N]``; the caller averages them (optionally weighted by rating).

- Full softmax: cross-entropy over every item (the seed's loss; exact, costs ``N x n_items``).
  :func:`full_softmax_mean` is the same loss averaged over the positions, fused: the logits are made, turned
  into probabilities and used for the gradient a block of rows at a time, in one pass over the block, and the
  ``N x n_items`` logits matrix is never held whole.
- Sampled softmax: cross-entropy over the target and ``S`` negatives shared by the batch. Negatives are drawn
  uniformly from the catalogue or from the batch's own targets ("in-batch", i.e. by popularity); the logQ
  correction subtracts the log sampling probability from every logit so that the sampled loss estimates the
  full softmax (Yi et al., RecSys 2019). Negatives equal to the row's target are masked out.
- BCE with one negative per target (SASRec, Kang & McAuley 2018): binary cross-entropy of the target against one
  item drawn uniformly for that target alone (a draw equal to the target is left out).
- BPR-max (Hidasi & Karatzoglou, CIKM 2018; GRU4Rec's ranking loss): ``-log sum_j s_j sigmoid(r_target - r_j)``
  plus ``lambda * sum_j s_j r_j^2``, ``s_j`` the softmax weight of negative j among the negatives: the pairwise
  comparison is dominated by the hardest negatives, and the score regularisation keeps their logits near zero.
- gBCE (Petrov & Macdonald, RecSys 2023): binary cross-entropy over the target and the ``S`` negatives with the
  positive probability raised to the power beta = alpha * (t * (1 - 1/alpha) + 1/alpha), alpha = S / (n_items - 1),
  which counters the overconfidence that negative sampling gives BCE; t = 0 is plain BCE, t = 1 full calibration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

OutputVectors = Callable[[torch.Tensor | None], torch.Tensor]
"""``vectors(items [S] or None) -> [S, H]``: the output vectors of items (None: every item); logit = feature . vector."""


def full_softmax(vectors: OutputVectors, features: torch.Tensor, targets: torch.Tensor, *, label_smoothing: float = 0.0,
                 excluded: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """Cross-entropy over the whole catalogue; ``excluded`` (row, item) pairs leave the softmax."""
    logits = (features @ vectors(None).T).float()
    if excluded is not None:  # in place: the matrix product's backward needs its inputs, not its output
        logits = logits.index_put_(excluded, torch.tensor(float("-inf"), device=logits.device))
    return cross_entropy(logits, targets, label_smoothing)


def full_softmax_mean(vectors: OutputVectors, features: torch.Tensor, targets: torch.Tensor,
                      weights: torch.Tensor | None = None,
                      excluded: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """``sum_i weights_i * full_softmax_i`` (default weights ``1/N``: the mean), computed in blocks of rows.

    Equal to ``(full_softmax(...) * weights).sum()`` up to float rounding. Under autocast the matrix products
    take the autocast dtype, as the plain path's do, and the softmax stays in float32. ``excluded`` (row, item)
    pairs must be sorted by row (as ``nonzero`` gives them).
    """
    weights = torch.full_like(targets, 1 / max(len(targets), 1), dtype=torch.float32) if weights is None else weights
    device = features.device.type
    products = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
    rows, items = excluded if excluded is not None else (None, None)
    with torch.autocast(device, enabled=False):  # the blocks choose each operation's precision themselves
        return _FusedSoftmaxCrossEntropy.apply(features, vectors(None), targets, weights.float(), rows, items,
                                               products)  # fmt: skip


_BLOCK_FLOATS = 2**22
"""Logits per block and torch thread of :func:`full_softmax_mean` (16 MiB a thread). 1 MiB blocks, which stay in
a core's L2 cache, were a little faster alone but make ~100 small parallel regions a step, and two trainings
sharing the 2-core CPU then kept 35 % of their speed alone each instead of 44-48 % (two runs)."""


class _FusedSoftmaxCrossEntropy(torch.autograd.Function):
    """The weighted cross-entropy and, when asked for, its gradients, in one pass over blocks of rows: logits,
    probabilities, log-sum-exp, ``probabilities - one_hot(target)`` times the weights, then the two
    gradient products. The backward pass only scales what the forward pass stored (``N x H`` and
    ``n_items x H``). The matrix products run in ``products`` (float32, or autocast's bfloat16 or float16), the
    rest in float32."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                rows: torch.Tensor | None, items: torch.Tensor | None, products: torch.dtype) -> torch.Tensor:  # fmt: skip
        grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        f, v = features.to(products), vectors.to(products)
        d_features = torch.empty(f.shape, device=f.device) if grad else None
        d_vectors = torch.zeros(v.shape, device=v.device) if grad else None
        total = torch.zeros((), dtype=torch.float32, device=f.device)
        block = max(1, _BLOCK_FLOATS * torch.get_num_threads() // max(1, len(v)))
        starts = torch.arange(0, len(f) + block, block, device=f.device)
        bounds = torch.searchsorted(rows, starts).tolist() if rows is not None else None
        for i, lo in enumerate(range(0, len(f), block)):
            hi = min(lo + block, len(f))
            logits = (f[lo:hi] @ v.T).float()
            if rows is not None and items is not None and bounds is not None and bounds[i] < bounds[i + 1]:
                at = slice(bounds[i], bounds[i + 1])
                logits.index_put_((rows[at] - lo, items[at]), torch.tensor(float("-inf"), device=f.device))
            target_logits = logits.gather(1, targets[lo:hi, None])[:, 0]
            top = logits.amax(1)
            probabilities: torch.Tensor
            if logits.device.type == "cpu":  # in place (one fused kernel: faster than max, exp and sum apart)
                probabilities = torch.ops.aten._softmax.out(logits, 1, False, out=logits)
            else:
                probabilities = torch.softmax(logits, 1)
            # log-sum-exp from the top item, whose probability (at least 1 / n_items) cannot underflow
            log_sum_exp = top - probabilities.amax(1).log()
            w = weights[lo:hi]
            total += (w * (log_sum_exp - target_logits)).sum()
            if grad:
                d_logits = probabilities.mul_(w[:, None])
                d_logits[torch.arange(hi - lo, device=f.device), targets[lo:hi]] -= w
                if products == torch.float32:
                    torch.mm(d_logits, v, out=d_features[lo:hi])  # type: ignore[index]
                    d_vectors.addmm_(d_logits.T, f[lo:hi])  # type: ignore[union-attr]
                else:
                    d_low = d_logits.to(products)
                    d_features[lo:hi] = d_low @ v  # type: ignore[index]
                    d_vectors += d_low.T @ f[lo:hi]  # type: ignore[operator]
        ctx.save_for_backward(d_features, d_vectors)
        ctx.dtypes = (features.dtype, vectors.dtype)
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        d_features, d_vectors = ctx.saved_tensors
        return ((d_features * grad_total).to(ctx.dtypes[0]), (d_vectors * grad_total).to(ctx.dtypes[1]),
                None, None, None, None, None)  # fmt: skip


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy per row. Label smoothing spreads its share over the items in the softmax: a logit at -inf
    (an excluded item) is out of it, where ``F.cross_entropy`` would smooth onto it and return inf."""
    if label_smoothing == 0.0:
        return F.cross_entropy(logits, targets, reduction="none")
    log_p = torch.log_softmax(logits, dim=1)
    inside = torch.isfinite(logits)
    uniform = -log_p.masked_fill(~inside, 0.0).sum(1) / inside.sum(1)
    return (1 - label_smoothing) * -log_p.gather(1, targets[:, None])[:, 0] + label_smoothing * uniform


def draw_negatives(targets: torch.Tensor, count: int, n_items: int, source: str) -> torch.Tensor:
    """``count`` negative item tokens shared by the batch: uniform over the catalogue, or among ``targets``."""
    if source == "uniform":
        return torch.randint(n_items, (count,), device=targets.device)
    return targets[torch.randint(len(targets), (count,), device=targets.device)]


def sampled_logits(vectors: OutputVectors, features: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                   log_q: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    """Logits ``[N, 1 + S]``: the target first, then the shared negatives (accidental hits at -inf).

    ``log_q`` ``[n_items]``: log sampling probability of each item, subtracted from the logits (logQ correction).
    """
    positive = (features * vectors(targets)).sum(-1).float()
    negative = (features @ vectors(negatives).T).float()
    if log_q is not None:
        positive = positive - log_q[targets]
        negative = negative - log_q[negatives]
    negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    return torch.cat([positive[:, None], negative], dim=1)


def sampled_softmax(logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy with the target in column 0 of ``logits`` from :func:`sampled_logits`."""
    zeros = torch.zeros(len(logits), dtype=torch.int64, device=logits.device)
    return cross_entropy(logits, zeros, label_smoothing)


def gbce(logits: torch.Tensor, n_items: int, t: float) -> torch.Tensor:
    """Generalised binary cross-entropy with the target in column 0 of ``logits`` (masked negatives at -inf)."""
    negatives = logits.shape[1] - 1
    alpha = negatives / max(n_items - 1, 1)
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
    positive = -beta * F.logsigmoid(logits[:, 0])
    negative = -F.logsigmoid(-logits[:, 1:]).sum(1)  # a masked negative (-inf) contributes -log(1) = 0
    return positive + negative


def bce_one_negative(vectors: OutputVectors, features: torch.Tensor, targets: torch.Tensor, n_items: int) -> torch.Tensor:
    """SASRec's loss: ``-log sigmoid(target logit) - log sigmoid(-negative logit)``, a uniform negative per target."""
    negatives = torch.randint(n_items, targets.shape, device=targets.device)
    positive = (features * vectors(targets)).sum(-1).float()
    negative = (features * vectors(negatives)).sum(-1).float()
    return -F.logsigmoid(positive) - F.logsigmoid(-negative) * (negatives != targets)


def bpr_max(logits: torch.Tensor, regularization: float) -> torch.Tensor:
    """BPR-max with the target in column 0 of ``logits`` (masked negatives at -inf carry no weight)."""
    negative = logits[:, 1:]
    weights = torch.softmax(negative, dim=1)
    finite = negative.masked_fill(torch.isinf(negative), 0.0)
    ranked_above = (weights * torch.sigmoid(logits[:, :1] - finite)).sum(1)
    return -torch.log(ranked_above + 1e-24) + regularization * (weights * finite.square()).sum(1)
