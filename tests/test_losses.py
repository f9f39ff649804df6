"""Loss choices of the transformer plugin: sampled softmax with logQ, gBCE, rating weights, item-id dropout."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recplug._components import RunContext
from recplug_movielens import MovieLens, MovieLensOptions
from recplug_splits import LeaveOneOut, LeaveOneOutOptions
from recplug_transformer import Transformer, TransformerOptions, losses


def vectors_of(weight: torch.Tensor):
    return lambda items: weight if items is None else weight[items]


def test_sampled_softmax_over_every_item_is_the_full_softmax() -> None:
    torch.manual_seed(0)
    weight, features, targets = torch.randn(50, 8), torch.randn(12, 8), torch.randint(50, (12,))
    full = losses.full_softmax(vectors_of(weight), features, targets)
    logits = losses.sampled_logits(vectors_of(weight), features, targets, torch.arange(50), log_q=None)
    assert torch.isinf(logits[:, 1:]).sum(1).eq(1).all()  # each row's own target is masked among the negatives
    torch.testing.assert_close(losses.sampled_softmax(logits), full)


@pytest.mark.parametrize("block_floats", [2**18, 150])  # one block; blocks of 3 rows (the last one short)
@pytest.mark.parametrize("n_items", [50, 3883])  # rows shorter than a vector register; ML-1M's catalogue
def test_the_fused_softmax_mean_equals_the_full_softmax_and_its_gradients(monkeypatch, block_floats, n_items) -> None:
    monkeypatch.setattr(losses, "_BLOCK_FLOATS", block_floats)
    torch.manual_seed(0)
    weight, features, targets = torch.randn(n_items, 8), torch.randn(13, 8), torch.randint(n_items, (13,))
    rows, items = torch.randint(13, (60,)).sort().values, torch.randint(n_items, (60,))
    keep = items != targets[rows]  # as the model gives them: never a row's own target
    excluded = (rows[keep], items[keep])
    weights = torch.rand(13)
    results = []
    for loss in (lambda w, f: (losses.full_softmax(vectors_of(w), f, targets, excluded=excluded) * weights).sum(),
                 lambda w, f: losses.full_softmax_mean(vectors_of(w), f, targets, weights, excluded=excluded)):
        w, f = weight.clone().requires_grad_(), features.clone().requires_grad_()
        value = loss(w, f)
        (2.5 * value).backward()  # the backward pass scales by the incoming gradient
        results.append((value, w.grad, f.grad))
    for expected, fused in zip(*results, strict=True):
        torch.testing.assert_close(fused, expected)
    mean = losses.full_softmax_mean(vectors_of(weight), features, targets)  # no weights: the mean
    torch.testing.assert_close(mean, losses.full_softmax(vectors_of(weight), features, targets).mean())
    assert not mean.requires_grad


@pytest.mark.parametrize("block_floats", [2**18, 150])
def test_the_fused_softmax_mean_under_autocast_is_the_plain_one(monkeypatch, block_floats) -> None:
    monkeypatch.setattr(losses, "_BLOCK_FLOATS", block_floats)
    torch.manual_seed(0)
    weight, features, targets = torch.randn(50, 8), torch.randn(13, 8), torch.randint(50, (13,))
    results = []
    for loss in (lambda w, f: losses.full_softmax(vectors_of(w), f, targets).mean(),
                 lambda w, f: losses.full_softmax_mean(vectors_of(w), f, targets)):
        w, f = weight.clone().requires_grad_(), features.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss(w, f)
        value.backward()
        results.append((value, w.grad, f.grad))
    (plain, *plain_grads), (fused, *fused_grads) = results
    torch.testing.assert_close(fused, plain)  # the same bfloat16 logits, the same float32 softmax
    for expected, got in zip(plain_grads, fused_grads, strict=True):  # products of bfloat16-rounded gradients
        torch.testing.assert_close(got, expected, rtol=2e-2, atol=2e-3)
    with torch.no_grad():
        exact = losses.full_softmax_mean(vectors_of(weight), features, targets)
    assert not torch.equal(fused, exact)  # the products did run in bfloat16


def test_label_smoothing_spreads_over_the_items_left_in_the_softmax() -> None:
    torch.manual_seed(0)
    weight, features, targets = torch.randn(50, 8), torch.randn(12, 8), torch.randint(50, (12,))
    smoothed = losses.full_softmax(vectors_of(weight), features, targets, label_smoothing=0.1)
    torch.testing.assert_close(smoothed, F.cross_entropy(features @ weight.T, targets, label_smoothing=0.1,
                                                         reduction="none"))  # fmt: skip
    # excluding items: equal to the smoothed softmax over the catalogue without them (and finite)
    kept = torch.tensor([i for i in range(50) if i % 7 != 3 or i in targets.tolist()])
    rows = torch.arange(12).repeat_interleave(50)
    items = torch.arange(50).repeat(12)
    out = ~torch.isin(items, kept)
    excluded = losses.full_softmax(vectors_of(weight), features, targets, label_smoothing=0.1,
                                   excluded=(rows[out], items[out]))  # fmt: skip
    remapped = torch.searchsorted(kept, targets)
    expected = F.cross_entropy(features @ weight[kept].T, remapped, label_smoothing=0.1, reduction="none")
    torch.testing.assert_close(excluded, expected)
    logits = losses.sampled_logits(vectors_of(weight), features, targets, torch.arange(50), log_q=None)
    assert torch.isfinite(losses.sampled_softmax(logits, label_smoothing=0.1)).all()


def test_logq_correction_subtracts_the_log_sampling_probability() -> None:
    torch.manual_seed(0)
    weight, features = torch.randn(20, 4), torch.randn(3, 4)
    targets, negatives = torch.tensor([1, 2, 3]), torch.tensor([5, 6, 2])
    log_q = torch.log(torch.linspace(0.01, 0.1, 20))
    raw = losses.sampled_logits(vectors_of(weight), features, targets, negatives, log_q=None)
    corrected = losses.sampled_logits(vectors_of(weight), features, targets, negatives, log_q=log_q)
    torch.testing.assert_close(corrected[:, 0], raw[:, 0] - log_q[targets])
    finite = torch.isfinite(raw[:, 1:])
    torch.testing.assert_close(corrected[:, 1:][finite], (raw[:, 1:] - log_q[negatives])[finite])
    assert torch.isinf(corrected[1, 3])  # negative 2 is row 1's target: an accidental hit, masked


def test_gbce_interpolates_between_bce_and_calibrated_beta() -> None:
    logits = torch.tensor([[1.0, -0.5, 0.3, float("-inf")]])
    bce = -F.logsigmoid(logits[:, 0]) - F.logsigmoid(-logits[:, 1:3]).sum(1)
    torch.testing.assert_close(losses.gbce(logits, n_items=101, t=0.0), bce)  # t = 0: plain BCE
    alpha = 3 / 100
    calibrated = -alpha * F.logsigmoid(logits[:, 0]) - F.logsigmoid(-logits[:, 1:3]).sum(1)
    torch.testing.assert_close(losses.gbce(logits, n_items=101, t=1.0), calibrated)  # t = 1: beta = alpha


def test_in_batch_negatives_come_from_the_targets() -> None:
    targets = torch.tensor([7, 7, 9])
    assert set(losses.draw_negatives(targets, 100, 50, "in_batch").tolist()) <= {7, 9}
    uniform = losses.draw_negatives(targets, 1000, 50, "uniform")
    assert uniform.min() >= 0 and uniform.max() < 50 and len(set(uniform.tolist())) > 40


@pytest.fixture
def data_and_split(ml1m_dir: Path):
    data = MovieLens(MovieLensOptions(data_dir=str(ml1m_dir))).load(RunContext())
    return data, LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())


@pytest.mark.parametrize("loss,source", [("sampled_softmax", "uniform"), ("sampled_softmax", "in_batch"), ("gbce", "uniform")])
def test_sampled_losses_train_a_model(data_and_split, loss: str, source: str) -> None:
    data, split = data_and_split
    torch.manual_seed(0)
    model = Transformer(TransformerOptions(objective="all_positions", join="last", output="tied", context_length=8,
                                           embedding_dim=16, num_layers=1, num_heads=2, interaction_hidden=[],
                                           loss=loss, negatives=16, negative_source=source))  # fmt: skip
    model.prepare(data)
    batch = model.training_examples(split.train).batch(np.arange(16))
    optimizer = torch.optim.Adam(model.module.parameters(), lr=1e-2)

    def full_softmax_loss() -> float:
        model.module.eval()
        features = model.module.position_features(batch["users"], batch["items"])[batch["mask"]]
        value = F.cross_entropy(model.module.output(features), batch["targets"][batch["mask"]]).item()
        model.module.train()
        return value

    before = full_softmax_loss()
    for _ in range(200):
        optimizer.zero_grad()
        model.loss(batch).backward()
        optimizer.step()
    # the sampled objective improves the real one (gBCE, a binary loss, moves slowest: 3.92 -> 3.49 here)
    assert full_softmax_loss() < before - 0.3


def test_rating_weighted_loss_is_a_rating_weighted_mean(data_and_split) -> None:
    data, split = data_and_split
    plain = Transformer(TransformerOptions(embedding_dropout=0.0, attention_dropout=0.0, residual_dropout=0.0))
    plain.prepare(data)
    weighted = Transformer(attrs.evolve(plain.options, rating_weighted_loss=True))
    weighted.prepare(data)
    weighted.module.load_state_dict(plain.module.state_dict())
    batch = plain.training_examples(split.train).batch(np.arange(32))
    per_target = F.cross_entropy(plain.module(batch["users"], batch["items"]), batch["targets"], reduction="none")
    ratings = batch["target_ratings"]
    assert ratings.min() >= 1 and ratings.max() <= 5 and len(set(ratings.tolist())) > 1
    torch.testing.assert_close(weighted.loss(batch), (per_target * ratings).sum() / ratings.sum())
    torch.testing.assert_close(plain.loss(batch), per_target.mean())


def test_item_id_dropout_hides_ids_in_training_only(data_and_split) -> None:
    data, _ = data_and_split
    torch.manual_seed(0)
    model = Transformer(TransformerOptions(item_features=["genres"], id_dropout=0.5))
    model.prepare(data)
    embedding = model.module.item_embedding
    tokens = torch.arange(data.n_items).repeat(20)
    dropped = embedding(tokens, id_dropout=0.5)
    only_features = embedding(tokens) - embedding.ids(tokens)
    share = torch.isclose(dropped, only_features).all(1).float().mean().item()
    assert 0.4 < share < 0.6
    model.module.eval()  # evaluation sees every id
    window = torch.tensor([[1, 2, 3, 4, 5]])
    assert torch.equal(model.module(torch.tensor([0]), window), model.module(torch.tensor([0]), window))
