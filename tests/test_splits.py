from __future__ import annotations

import numpy as np
import pytest

from recplug._components import RunContext
from recplug._data import build_interactions
from recplug._errors import SpecError
from recplug._split import gather_histories
from recplug_splits import (
    LastN,
    LastNOptions,
    LeaveOneOut,
    LeaveOneOutOptions,
    Ratio,
    RatioOptions,
    SeedWindowOptions,
    SeedWindows,
    Temporal,
    TemporalOptions,
)


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
    assert "validation_users" not in split.protocol  # the default protocol reads as before the option existed


def test_leave_one_out_with_a_sample_of_validation_users() -> None:
    users = np.repeat(np.arange(40), 5)
    items = np.tile(np.arange(5), 40)
    data = build_interactions(users, items, np.ones(200), np.arange(200), fingerprint="y")
    split = LeaveOneOut(LeaveOneOutOptions(validation_users=10)).split(data, RunContext(seed=3))
    validated = set(split.validation.users.tolist())
    assert len(validated) == 10 and split.protocol["validation_users"] == 10
    assert split.test.users.tolist() == list(range(40))  # every user is still tested on its last interaction
    second_to_last = data.offsets[1:] - 2
    trained_on = split.train.visible[second_to_last] & split.train.is_target[second_to_last]
    assert [u for u in range(40) if not trained_on[u]] == sorted(validated)  # the others train on it
    assert not split.train.visible[data.offsets[1:] - 1].any()  # no test interaction is ever visible
    again = LeaveOneOut(LeaveOneOutOptions(validation_users=10)).split(data, RunContext(seed=3))
    assert again.validation.users.tolist() == split.validation.users.tolist()  # the seed fixes the sample
    every = LeaveOneOut(LeaveOneOutOptions(validation_users=100)).split(data, RunContext(seed=3))
    assert len(every.validation) == 40 and every.protocol["validation_users"] == 40


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


def test_last_n_holds_out_each_users_latest_interactions(data) -> None:
    split = LastN(LastNOptions(test_n=2, validation_n=1)).split(data, RunContext())
    assert split.test.targets(data).tolist() == [4, 5]  # user 0's last two; users 1 and 2 are too short
    assert split.validation.targets(data).tolist() == [3]
    assert split.test.history_start.tolist() == [0, 0] and split.test.target_pos.tolist() == [4, 5]
    assert data.items[split.train.visible].tolist() == [0, 1, 2, 6, 7, 1, 2, 3]
    assert split.protocol["evaluated_users"] == 1 and split.protocol["training_only_users"] == 2
    one = LastN(LastNOptions()).split(data, RunContext())
    loo = LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())
    assert one.test.target_pos.tolist() == loo.test.target_pos.tolist()  # last-1 is leave-one-out
    assert one.train.visible.tolist() == loo.train.visible.tolist()


def test_ratio_holds_out_a_share_of_each_user() -> None:
    data = build_interactions([0] * 10 + [1] * 3, list(range(10)) + [0, 1, 2], [1.0] * 13, list(range(13)), fingerprint="r")
    split = Ratio(RatioOptions(test_fraction=0.2, validation_fraction=0.1)).split(data, RunContext())
    assert split.test.targets(data).tolist() == [8, 9, 2]  # 20% of 10 = 2; at least one of 3
    assert split.validation.targets(data).tolist() == [7, 1]
    assert int(split.train.visible.sum()) == 7 + 1
    with pytest.raises(ValueError, match="sum below 1"):
        RatioOptions(test_fraction=0.6, validation_fraction=0.5)


def test_temporal_split_cuts_every_user_at_one_moment() -> None:
    # times: user 0 at 0..5, user 1 at 10..13, user 2 at 3, 4 and 12
    users = [0] * 6 + [1] * 4 + [2] * 3
    items = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3]
    times = [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 3, 4, 12]
    data = build_interactions(users, items, [1.0] * 13, times, fingerprint="t")
    split = Temporal(TemporalOptions(validation_start="1970-01-01T00:00:05", test_start="1970-01-01T00:00:12")).split(
        data, RunContext())
    times = data.timestamps
    assert times[split.train.visible].max() < 5  # training sees only the time before validation
    assert sorted(times[split.validation.target_pos].tolist()) == [5, 11]  # user 1 starts at 10: no history yet
    # test: everything from 12 on with a history (user 1's 12 and 13, user 2's 12); the histories include
    # interactions after the cut (user 1's validation-period items)
    assert sorted(zip(split.test.users.tolist(), times[split.test.target_pos].tolist())) == [(1, 12), (1, 13), (2, 12)]
    first_of_user_1 = data.offsets[1]
    assert first_of_user_1 not in split.validation.target_pos  # a first interaction has no history to predict from
    assert (split.test.history_start == data.offsets[split.test.users]).all()
    assert split.protocol["test_from"] == "1970-01-01T00:00:12" and split.protocol["test_users_without_training_data"] == 1
    first = Temporal(TemporalOptions(validation_start="1970-01-01T00:00:05", test_start="1970-01-01T00:00:12",
                                     targets="first")).split(data, RunContext())  # fmt: skip
    assert sorted(times[first.test.target_pos].tolist()) == [12, 12]  # one case per user
    with pytest.raises(SpecError, match="no interaction falls in the test period"):
        Temporal(TemporalOptions(test_start="1971-01-01")).split(data, RunContext())
    with pytest.raises(ValueError, match="ISO 8601"):
        TemporalOptions(test_start="next tuesday")


def test_temporal_quantiles_and_milliseconds() -> None:
    times = np.arange(100, dtype=np.int64) * 1000 + 1_600_000_000_000
    data = build_interactions(np.arange(100) % 5, np.arange(100) % 7, np.ones(100), times, fingerprint="q",
                              source={"time_unit": "ms"})  # fmt: skip
    split = Temporal(TemporalOptions(validation_quantile=0.8, test_quantile=0.9)).split(data, RunContext())
    assert len(split.test) == 10 and len(split.validation) == 10 and int(split.train.visible.sum()) == 80
    assert split.protocol["test_from"] == "2020-09-13T12:28:10"  # 1,600,000,090 s: the 90th time
