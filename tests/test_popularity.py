from __future__ import annotations

import pytest
import torch

from recplug._components import RunContext
from recplug._data import build_interactions
from recplug._split import TrainView
from recplug_popularity import Popularity, PopularityOptions


@pytest.fixture
def train():
    # item 0: 4 ratings (mean 2), item 1: 3 ratings (mean 5), item 2: 1 rating (mean 5), item 3: unrated
    users = [0, 0, 0, 1, 1, 2, 2, 3]
    items = [0, 1, 2, 0, 1, 0, 1, 0]
    ratings = [2, 5, 5, 2, 5, 2, 5, 2]
    data = build_interactions(users, items, ratings, range(8), fingerprint="x", item_ids=[0, 1, 2, 3])
    visible = torch.ones(8, dtype=torch.bool).numpy()
    return TrainView(data, visible=visible, is_target=visible)


def fitted(train, **options) -> Popularity:
    model = Popularity(PopularityOptions(**options))
    model.fit(train, None, RunContext())
    return model


def test_count_ranks_by_number_of_ratings(train) -> None:
    top, _ = fitted(train).recommend(torch.tensor([0]), torch.tensor([[4]]), k=4)
    assert top.tolist() == [[0, 1, 2, 3]]


def test_mean_rating_of_popular_and_exclusion(train) -> None:
    model = fitted(train, method="mean_rating_of_popular", percentile=50.0)  # popular: count >= 3
    top, _ = model.recommend(torch.tensor([0, 1]), torch.tensor([[4, 4], [4, 1]]), k=3)
    assert top[0].tolist() == [1, 0, 2]  # item 2 has the best mean but is not popular
    assert top[1].tolist() == [0, 2, 3]  # item 1 is in the history: excluded


def test_only_visible_interactions_count(train) -> None:
    hidden = train.visible.copy()
    hidden[[0, 3, 5, 7]] = False  # hide every rating of item 0
    model = fitted(TrainView(train.data, hidden, hidden))
    assert model.item_scores[0] == 0.0
