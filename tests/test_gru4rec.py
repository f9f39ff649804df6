"""GRU4Rec: the BPR-max loss, learning a sequence with either loss, and the registry round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import check_served_like_fitted, train_register_and_reload
from recplug_transformer import GRU4Rec, GRU4RecOptions, losses
from recplug_transformer.gru4rec import GRU4RecModule


def test_bpr_max_is_the_softmax_weighted_pairwise_loss_plus_its_regularisation() -> None:
    logits = torch.tensor([[2.0, 1.0, -1.0, float("-inf")], [0.5, 3.0, 0.0, 1.0]])  # target first; -inf: masked
    loss = losses.bpr_max(logits, regularization=0.5)
    for row, value in zip(logits, loss):
        negative = row[1:][torch.isfinite(row[1:])]
        weights = torch.softmax(negative, 0)
        expected = -torch.log((weights * torch.sigmoid(row[0] - negative)).sum()) + 0.5 * (weights * negative**2).sum()
        assert value == pytest.approx(expected.item(), rel=1e-6)
    assert torch.isfinite(loss).all()


def test_bpr_max_falls_as_the_target_rises_above_the_negatives() -> None:
    low, high = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[5.0, 1.0, 2.0]])
    assert losses.bpr_max(high, 0.0) < losses.bpr_max(low, 0.0)


@pytest.mark.parametrize("loss", ["cross_entropy", "bpr_max"])
def test_gru4rec_learns_a_walk_through_the_catalogue(loss: str) -> None:
    """Every sequence walks the items in order; after training the next item ranks first almost everywhere."""
    torch.manual_seed(0)
    n_items = 30
    model = _untrained(GRU4RecOptions(hidden_dim=32, context_length=10, embedding_dropout=0.0, hidden_dropout=0.0,
                                      loss=loss, negatives=16, negative_source="uniform"), n_items)  # fmt: skip
    optimizer = torch.optim.Adam(model.module.parameters(), lr=0.02)
    for _ in range(150):
        starts = torch.randint(0, n_items - 11, (32, 1))
        walk = starts + torch.arange(11)
        batch = {"items": walk[:, :-1], "targets": walk[:, 1:], "mask": torch.ones(32, 10, dtype=torch.bool)}
        model.module.train()
        optimizer.zero_grad()
        model.loss(batch).backward()
        optimizer.step()
    histories = torch.arange(5, 12)[None, :] + torch.arange(0, 15)[:, None]  # 15 walks of 7 items
    predicted = model.score(torch.zeros(15, dtype=torch.int64), histories).argmax(1)
    assert (predicted == histories[:, -1] + 1).float().mean() >= 0.9


def _untrained(options: GRU4RecOptions, n_items: int) -> GRU4Rec:
    """A GRU4Rec over ``n_items`` items (the padding token is ``n_items``), without a dataset."""
    model = GRU4Rec(options)
    model.n_items, model.pad_token, model.module = n_items, n_items, GRU4RecModule(n_items, options)
    return model


@pytest.mark.parametrize("loss", ["cross_entropy", "bpr_max"])
def test_gru4rec_trains_registers_reloads_and_serves_a_new_history(tmp_path: Path, loss: str) -> None:
    options = f'hidden_dim = 16\ncontext_length = 20\nloss = "{loss}"\nnegatives = 8'
    result, served = train_register_and_reload(tmp_path, "gru4rec", options, "epochs = 1\nbatch_size = 32\nlr = 0.001")
    check_served_like_fitted(result.fitted[0].recommender, served)


def test_an_empty_history_still_gets_scores() -> None:
    model = _untrained(GRU4RecOptions(hidden_dim=8), 12)
    scores = model.score(torch.zeros(2, dtype=torch.int64), torch.empty(2, 0, dtype=torch.int64))
    assert scores.shape == (2, 12) and torch.isfinite(scores).all()
