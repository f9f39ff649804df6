from __future__ import annotations

import numpy as np
import pytest

from recplug._components import RunContext
from recplug._data import build_interactions
from recplug._split import gather_histories
from recplug_splits import LeaveOneOut, LeaveOneOutOptions, SeedWindowOptions, SeedWindows


@pytest.fixture
def data():
    # user 0: items 0..5 (6 interactions); user 1: 2 interactions; user 2: 3 interactions
    users = [0] * 6 + [1] * 2 + [2] * 3
    items = [0, 1, 2, 3, 4, 5, 6, 7, 1, 2, 3]
    return build_interactions(users, items, [3.0] * 11, list(range(11)), fingerprint="x")


def test_leave_one_out(data) -> None:
    split = LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())
    assert split.test.users.tolist() == [0, 2]  # user 1 has too few interactions: training only
    assert split.test.targets(data).tolist() == [5, 3]
    assert split.validation.targets(data).tolist() == [4, 2]
    assert gather_histories(data, split.test.history_start, split.test.target_pos).tolist() == [
        [0, 1, 2, 3, 4], [8, 8, 8, 1, 2]  # left-padded with the padding token (8)
    ]  # fmt: skip
    visible = data.items[split.train.visible].tolist()
    assert visible == [0, 1, 2, 3, 6, 7, 1]  # nothing of validation or test is visible
    assert data.items[split.train.is_target].tolist() == [1, 2, 3, 7]  # first items are context only
    assert split.protocol["training_only_users"] == 1


def test_seed_windows_hold_out_random_windows_reproducibly(data) -> None:
    opts = SeedWindowOptions(sequence_length=2, test_fraction=0.25, validation_fraction=0.125)
    a = SeedWindows(opts).split(data, RunContext(seed=3))
    b = SeedWindows(opts).split(data, RunContext(seed=3))
    assert a.test.target_pos.tolist() == b.test.target_pos.tolist()
    windows = 11 - 3  # every position but each user's first
    assert len(a.test) == 2 and len(a.validation) == 1
    assert a.train.is_target.sum() == windows - 3
    held = set(a.test.target_pos) | set(a.validation.target_pos)
    assert not held & set(a.train.target_positions)
    assert np.all(a.test.target_pos - a.test.exclude_start <= 2)  # seen items: the window's context
    assert np.all(a.test.history_start == data.offsets[a.test.users])  # models may look further back


def test_seed_windows_stride(data) -> None:
    split = SeedWindows(SeedWindowOptions(stride=2, test_fraction=0.2, validation_fraction=0.0)).split(data, RunContext())
    all_targets = np.sort(np.concatenate([split.train.target_positions, split.test.target_pos]))
    assert all_targets.tolist() == [1, 3, 5, 7, 9]  # offsets 1, 3, 5 within each user


def test_gather_histories_truncates_to_length(data) -> None:
    histories = gather_histories(data, np.array([0]), np.array([6]), length=3)
    assert histories.tolist() == [[3, 4, 5]]


def test_seen_mask_matches_the_histories(data) -> None:
    from recplug._evaluation import seen_mask

    mask = seen_mask(data, np.array([0, 6, 8]), np.array([3, 8, 8]))
    assert mask.shape == (3, data.n_items)
    assert [np.flatnonzero(row).tolist() for row in mask.numpy()] == [[0, 1, 2], [6, 7], []]
