"""The item-based baselines: ItemKNN and EASE, against direct computations of their formulas on small data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity

from helpers import write_ml1m
from recplug._components import RunContext
from recplug._model_registry import ModelRegistry
from recplug_item_based import EASE, EASEOptions, ItemKNN, ItemKNNOptions
from recplug_movielens import MovieLens, MovieLensOptions
from recplug_splits import LeaveOneOut, LeaveOneOutOptions


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    folder = write_ml1m(tmp_path_factory.mktemp("item-based"), n_users=70, n_movies=40)
    data = MovieLens(MovieLensOptions(data_dir=str(folder), cache=False)).load(RunContext())
    return data, LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())


def dense(model) -> np.ndarray:
    return (model.weights.to_dense() if model.weights.is_sparse else model.weights).numpy()


def test_itemknn_keeps_each_items_most_cosine_similar_neighbours(split) -> None:
    data, s = split
    x = s.train.user_item_matrix().toarray()
    assert x.max() == 1.0 and x.sum() == len({(u, i) for u, i in zip(*np.nonzero(x))})  # each pair once
    full = ItemKNN(ItemKNNOptions(neighbours=1000))
    full.fit(s.train, s.validation, RunContext())
    expected = cosine_similarity(x.T)
    np.fill_diagonal(expected, 0.0)
    assert np.allclose(dense(full), expected, atol=1e-6)

    top3 = ItemKNN(ItemKNNOptions(neighbours=3))
    top3.fit(s.train, s.validation, RunContext())
    kept = dense(top3)
    assert ((kept > 0).sum(axis=1) <= 3).all()
    for i in np.flatnonzero(kept.sum(axis=1)):  # what is kept is the row's largest similarities
        assert kept[i][kept[i] > 0].min() >= np.sort(expected[i])[-3] - 1e-6


def test_asymmetric_cosine_and_shrink_follow_their_formula(split) -> None:
    data, s = split
    x = s.train.user_item_matrix().toarray()
    model = ItemKNN(ItemKNNOptions(neighbours=1000, similarity="asymmetric", alpha=0.8, shrink=2.0))
    model.fit(s.train, s.validation, RunContext())
    common, counts = x.T @ x, x.sum(axis=0)
    expected = common / (counts[:, None] ** 0.8 * counts[None, :] ** 0.2 + 2.0)
    np.fill_diagonal(expected, 0.0)
    assert np.allclose(dense(model), np.nan_to_num(expected), atol=1e-6)


def test_ease_is_the_closed_form_regression_with_a_zero_diagonal(split) -> None:
    data, s = split
    model = EASE(EASEOptions(l2=10.0))
    model.fit(s.train, s.validation, RunContext())
    x = s.train.user_item_matrix().toarray().astype(np.float64)
    weights = dense(model).astype(np.float64)
    assert np.allclose(np.diag(weights), 0.0)
    # the optimum of ||X - XW||^2 + l2 ||W||^2 with diag(W) = 0: the gradient is zero off the diagonal
    gradient = -x.T @ (x - x @ weights) + 10.0 * weights
    np.fill_diagonal(gradient, 0.0)
    assert np.abs(gradient).max() < 1e-3


@pytest.mark.parametrize("cls, options", [(ItemKNN, ItemKNNOptions()), (EASE, EASEOptions())])
def test_item_based_models_register_reload_and_serve_new_users(split, tmp_path: Path, cls, options) -> None:
    data, s = split
    model = cls(options)
    model.fit(s.train, s.validation, RunContext())
    histories = torch.tensor([[data.pad_token, 3, 5], [1, 2, 4]])
    before = model.score(torch.tensor([0, 1]), histories)
    x = torch.zeros(2, data.n_items)
    x[0, [3, 5]], x[1, [1, 2, 4]] = 1, 1
    assert torch.allclose(before, x @ torch.from_numpy(dense(model)), atol=1e-5)  # padding counts for nothing
    registry = ModelRegistry(tmp_path / "registry")
    registry.register("m", model, provenance={"plugin": {"kind": "baseline", "name": cls.__name__.lower(),
                      "distribution": "recplug", "version": "0"}, "options": {}, "training": None},
                      spec={}, data=data, metrics={}, protocol={})  # fmt: skip
    served = registry.load("m")
    assert torch.allclose(served.recommender.score(torch.tensor([0, 1]), histories), before)
    raw = data.item_ids[[3, 5]].tolist()
    recommended = [r["item_id"] for r in served.recommend(history=raw, k=5)]
    assert len(recommended) == 5 and not set(recommended) & set(raw)
