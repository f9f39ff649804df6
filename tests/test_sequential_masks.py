"""Every sequential model sees neither the future nor the padding.

- causal: changing a later item never changes an earlier position's output;
- padding: the padding token's own vector never changes any output, and a history scores the same however much
  left padding it carries.

Checked for the transformer in each of its shapes (the seed's windows, all-position training, features and
user towers) and for GRU4Rec.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from recplug._components import RunContext
from recplug_movielens import MovieLens, MovieLensOptions

TRANSFORMERS = {
    "seed window model": {},
    "all positions, tied": {"objective": "all_positions", "join": "last", "output": "tied", "user_embedding_dim": 0,
                            "context_length": 12},
    "features and user tower": {"objective": "all_positions", "join": "last", "item_features": ["genres", "year"],
                                "user_ids": False, "user_features": ["gender", "age"], "context_length": 12},
}  # fmt: skip


def _transformer(data, **options):
    from recplug_transformer import Transformer, TransformerOptions

    model = Transformer(TransformerOptions(embedding_dim=16, num_heads=2, num_layers=2, **options))
    model.prepare(data)
    return model


def _gru4rec(data):
    from recplug_transformer import GRU4Rec, GRU4RecOptions

    model = GRU4Rec(GRU4RecOptions(hidden_dim=16, context_length=12, embedding_dropout=0.0, hidden_dropout=0.0))
    model.prepare(data)
    return model


MODELS: dict[str, Callable] = {name: (lambda d, o=options: _transformer(d, **o)) for name, options in TRANSFORMERS.items()}
MODELS["gru4rec"] = _gru4rec


def _sequence_outputs(model, items: torch.Tensor) -> torch.Tensor:
    """The per-position outputs ``[B, L, H]`` the model predicts from."""
    if hasattr(model.module, "movies"):  # the transformer's item tower (every shape of the model has one)
        return model.module.movies(items)
    return model.module(items)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from helpers import write_ml1m

    torch.manual_seed(0)
    folder = write_ml1m(tmp_path_factory.mktemp("masks") / "ml-1m")
    return MovieLens(MovieLensOptions(data_dir=str(folder), cache=False)).load(RunContext())


@pytest.mark.parametrize("name", MODELS)
def test_a_later_item_never_changes_an_earlier_output(data, name: str) -> None:
    model = MODELS[name](data)
    model.module.eval()
    length = 12 if name != "seed window model" else 5
    items = torch.randint(0, data.n_items, (4, length))
    before = _sequence_outputs(model, items)
    for t in range(1, length):
        changed = items.clone()
        changed[:, t:] = torch.randint(0, data.n_items, (4, length - t))
        after = _sequence_outputs(model, changed)
        assert torch.allclose(after[:, :t], before[:, :t], atol=1e-6), f"position < {t} saw a later item"
        assert not torch.allclose(after[:, t], before[:, t], atol=1e-6)  # the change is visible where it happens


@pytest.mark.parametrize("name", [name for name in MODELS if name != "seed window model"])
def test_padding_never_changes_the_output(data, name: str) -> None:
    """(The seed's window model is the exception by design: its 'flatten' join concatenates every position of
    the window, so a short history's padding positions enter as a learned 'no item' vector. Padding beyond its
    window is still invisible, which the next test checks.)"""
    model = MODELS[name](data)
    model.module.eval()
    users = torch.tensor([0, 1, 2])
    history = torch.randint(0, data.n_items, (3, 3))
    pad = torch.full((3, 6), data.pad_token)
    scores = model.score(users, history)
    assert torch.allclose(model.score(users, torch.cat([pad, history], 1)), scores, atol=1e-5)  # more padding
    embedding = model.module.item_embedding.ids if hasattr(model.module, "item_embedding") else model.module.embedding
    with torch.no_grad():
        embedding.weight[data.pad_token] += 5.0  # whatever the padding vector is...
    assert torch.allclose(model.score(users, torch.cat([pad, history], 1)), scores, atol=1e-5)  # ...no change


def test_the_seed_model_ignores_padding_beyond_its_window(data) -> None:
    model = MODELS["seed window model"](data)
    model.module.eval()
    users, history = torch.tensor([0, 1]), torch.randint(0, data.n_items, (2, 5))
    padded = torch.cat([torch.full((2, 7), data.pad_token), history], 1)
    assert torch.equal(model.score(users, padded), model.score(users, history))


@pytest.mark.parametrize("path", ["sequence-first", "batch-first"])
def test_the_checks_catch_a_model_that_peeks(data, monkeypatch, path: str) -> None:
    """The causal check fails for a tower whose attention sees every position, on either attention path (windows
    of a few items with narrow heads run sequence-first on the CPU)."""
    model = MODELS["all positions, tied"](data)
    model.module.eval()
    import recplug_transformer.modules as modules
    from recplug_transformer import short_attention

    if path == "sequence-first":
        assert short_attention.serves(6, model.module.movies.head_dim, torch.device("cpu"))
        monkeypatch.setattr(modules, "blocked_keys", lambda *mask_and_shape: None)
    else:
        monkeypatch.setattr(short_attention, "SHORT_WINDOW", 0)
        monkeypatch.setattr(modules, "_causal_padding_mask",
                            lambda is_pad: torch.ones(is_pad.shape[1], is_pad.shape[1], dtype=torch.bool))  # fmt: skip
    items = torch.randint(0, data.n_items, (2, 6))
    changed = items.clone()
    changed[:, 5] = (items[:, 5] + 1) % data.n_items
    assert not torch.allclose(_sequence_outputs(model, items)[:, :5], _sequence_outputs(model, changed)[:, :5])


def test_gru4rec_padding_was_a_real_leak_before_packing(data) -> None:
    """A GRU stepping over left padding changes its state even with zero inputs: what packing prevents."""
    model = MODELS["gru4rec"](data)
    module = model.module
    items = torch.randint(0, data.n_items, (1, 3))
    padded = torch.cat([torch.full((1, 4), data.pad_token), items], 1)
    with torch.no_grad():
        naive = module.gru(module.embedding(padded))[0][:, -1]
        plain = module.gru(module.embedding(items))[0][:, -1]
    assert not torch.allclose(naive, plain, atol=1e-5)
    assert torch.allclose(module(padded)[:, -1], plain, atol=1e-6)

