"""What a splitter produces: training data and evaluation cases, as views over Interactions.

Nothing here copies sequences. A training view is a pair of boolean masks over the
interactions; an evaluation case is (user, history slice, target position) — the
history is ``items[history_start:target_pos]`` of the same user.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch

from ._data import Interactions

if TYPE_CHECKING:
    import scipy.sparse


@attrs.frozen(eq=False)
class TrainView:
    """The part of the interactions a recommender may learn from."""

    data: Interactions
    visible: np.ndarray
    """bool per interaction: may be used as input (history, counts, ratings)."""
    is_target: np.ndarray
    """bool per interaction: is a training target (next item to predict); implies visible."""

    @cached_property
    def target_positions(self) -> np.ndarray:
        """Flat positions of the training targets (int64)."""
        return np.flatnonzero(self.is_target)

    def user_item_matrix(self) -> scipy.sparse.csr_matrix:
        """Binary users x items matrix (float32, scipy CSR) of the visible interactions, each pair once: what
        item-based and matrix-factorisation models learn from."""
        from scipy import sparse

        data = self.data
        users = np.repeat(np.arange(data.n_users), np.diff(data.offsets))[self.visible]
        items = data.items[self.visible].astype(np.int64)
        matrix = sparse.csr_matrix((np.ones(len(items), dtype=np.float32), (users, items)),
                                   shape=(data.n_users, data.n_items))  # fmt: skip
        matrix.data[:] = 1.0  # a repeated pair was summed
        return matrix

    @cached_property
    def visible_ends(self) -> np.ndarray:
        """Per user, one past the last visible interaction (history prefix end for scoring)."""
        data = self.data
        cumulative = np.concatenate([[0], np.cumsum(self.visible, dtype=np.int64)])
        counts = cumulative[data.offsets[1:]] - cumulative[data.offsets[:-1]]
        return data.offsets[:-1] + counts


@attrs.frozen(eq=False)
class EvalCases:
    """Next-item prediction cases: for each case, predict ``items[target_pos]`` from the history."""

    users: np.ndarray
    """int64 user token of each case."""
    history_start: np.ndarray
    """int64 flat position where the case's history starts."""
    target_pos: np.ndarray
    """int64 flat position of the target; the history ends just before it."""
    exclude_start: np.ndarray | None = None
    """int64 flat position from which history items count as seen (never recommended); default: the whole
    history. A protocol may exclude less than it shows, e.g. only the last window."""

    def __attrs_post_init__(self) -> None:
        if self.exclude_start is None:
            object.__setattr__(self, "exclude_start", self.history_start)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def seen_start(self) -> np.ndarray:
        """int64 flat position from which history items count as seen (``exclude_start``, filled in)."""
        return self.history_start if self.exclude_start is None else self.exclude_start

    def targets(self, data: Interactions) -> np.ndarray:
        return data.items[self.target_pos].astype(np.int64)

    def subset(self, index: np.ndarray) -> EvalCases:
        return EvalCases(self.users[index], self.history_start[index], self.target_pos[index], self.seen_start[index])


@attrs.frozen(eq=False)
class Split:
    """The result of a splitter: train view, validation and test cases, and how they were made."""

    name: str
    train: TrainView
    validation: EvalCases
    test: EvalCases
    protocol: dict[str, Any]
    """Parameters that define the split (recorded with every result)."""


def gather_histories(data: Interactions, start: np.ndarray, end: np.ndarray, length: int | None = None) -> torch.Tensor:
    """Left-padded histories ``items[start:end]`` as an int64 tensor ``[n, length]``.

    The most recent item is in the last column; rows shorter than ``length`` are
    padded on the left with ``data.pad_token``; longer ones keep their last
    ``length`` items. ``length`` defaults to the longest history.
    """
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    if length is None:
        length = int((end - start).max(initial=1)) or 1
    index = end[:, None] - length + np.arange(length, dtype=np.int64)[None, :]
    valid = index >= start[:, None]
    tokens = np.where(valid, data.items[np.maximum(index, 0)], data.pad_token)
    return torch.from_numpy(tokens.astype(np.int64))
