"""Full-ranking evaluation, end to end on the test kit: seen items never come back, however long the history."""

from __future__ import annotations

import numpy as np
import torch
from recplug_testkit import Counts, Holdout, Toy, ToyOptions

from recplug._evaluation import rank_cases
from recplug.api import NoOptions, RunContext


def test_seen_items_are_excluded_even_beyond_max_history() -> None:
    data = Toy(ToyOptions(users=40, items=30, length=25)).load(RunContext())
    split = Holdout(NoOptions()).split(data, RunContext())
    model = Counts(NoOptions())
    model.fit(split.train, split.validation, RunContext())
    cases = split.test
    ranked = rank_cases(model, data, cases, 10, max_history=3)  # the recommender sees 3 items; all are excluded
    histories = [set(data.items[s:t].tolist()) for s, t in zip(cases.history_start, cases.target_pos)]
    assert max(len(h) for h in histories) > 3  # the case this test is about
    for top, seen in zip(ranked.top_items.tolist(), histories):
        assert not seen & set(top), "a seen item was recommended"
    # the same recommender without exclusion recommends seen items: the check above is not vacuous
    kept = rank_cases(model, data, cases, 10, exclude_seen=False)
    assert any(seen & set(top) for top, seen in zip(kept.top_items.tolist(), histories))
    # and the target's rank is where it really is in the list
    for top, rank, target in zip(ranked.top_items.tolist(), ranked.target_rank.tolist(), ranked.targets.tolist()):
        assert (top.index(target) if target in top else 10) == rank


def test_excluded_items_rank_below_every_other_item() -> None:
    data = Toy(ToyOptions(users=5, items=12, length=10)).load(RunContext())
    split = Holdout(NoOptions()).split(data, RunContext())
    model = Counts(NoOptions())
    model.fit(split.train, split.validation, RunContext())
    ranked = rank_cases(model, data, split.test, data.n_items)  # the whole catalogue, ranked
    for top, s, t in zip(ranked.top_items.tolist(), split.test.history_start, split.test.target_pos):
        seen = set(data.items[s:t].tolist())
        unseen_first = top[: data.n_items - len(seen)]
        assert not seen & set(unseen_first) and set(top[data.n_items - len(seen) :]) == seen
    assert torch.is_tensor(ranked.top_items) and ranked.top_items.shape == (len(split.test), data.n_items)
    assert np.array_equal(ranked.targets.numpy(), split.test.targets(data))
