"""Training examples for sequential models, gathered batch by batch from the flat interaction arrays.

Nothing here materialises every window: an example is an index (a target position or a
chunk end), and :meth:`batch` gathers the windows of a whole batch with one vectorised
numpy indexing operation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from ._data import Interactions
from ._split import TrainView, gather_histories


class ExampleSource(ABC):
    """Training examples addressed by index; :meth:`batch` gathers many at once (vectorised)."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def batch(self, index: Any) -> dict[str, torch.Tensor]:
        """The examples at ``index`` (an int64 numpy array) as a dict of CPU tensors."""

    def begin_epoch(self, rng: np.random.Generator) -> None:  # noqa: B027 (optional: most sources need nothing)
        """Called before each epoch with a generator seeded by the run's seed and the epoch (the same in every
        process and on resume); a source whose examples vary from epoch to epoch draws them here."""


class WindowExamples(ExampleSource):
    """(user, window of the ``length`` items before the target, target, its rating) for each target position."""

    def __init__(self, data: Interactions, target_positions: np.ndarray, length: int) -> None:
        self.data = data
        self.positions = np.asarray(target_positions, dtype=np.int64)
        self.length = length
        self.user_of = data.user_of

    def __len__(self) -> int:
        return len(self.positions)

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        pos = self.positions[index]
        users = self.user_of[pos].astype(np.int64)
        return {
            "users": torch.from_numpy(users),
            "items": gather_histories(self.data, self.data.offsets[users], pos, self.length),
            "targets": torch.from_numpy(self.data.items[pos].astype(np.int64)),
            "target_ratings": torch.from_numpy(self.data.ratings[pos]),
        }


class SequenceChunks(ExampleSource):
    """Non-overlapping chunks of each user's sequence: inputs, next items, their ratings, a loss mask (each ``[L]``).

    Chunks end at the user's last training target and step back ``L`` at a time, so every
    training target is predicted exactly once per epoch; positions whose next item is not a
    training target (held out, or padding) are masked out of the loss but still serve as inputs.

    With ``shift``, every epoch moves the boundaries of each user's lower chunks up by a random
    amount (at most the room the lowest chunk leaves unused, so a user keeps the same number of
    chunks and an epoch the same cost); the top chunk still ends at the last target and leaves to
    the chunk below the targets that it now covers. A target is then predicted after a context of
    a different length from epoch to epoch, rather than always after the same short one at a
    chunk's start.
    """

    def __init__(self, train: TrainView, length: int, shift: bool = False) -> None:
        data = self.data = train.data
        self.length = length
        self.shift = shift
        self.is_target = train.is_target
        targets = train.target_positions
        users = data.user_of[targets]
        last = np.full(data.n_users, -1, dtype=np.int64)
        np.maximum.at(last, users, targets)
        has = np.flatnonzero(last >= 0)
        first = data.offsets[has] + 1  # the earliest possible target of each user
        chunks = (last[has] - first) // length + 1
        owner = np.repeat(np.arange(len(has)), chunks)
        self.step = np.arange(chunks.sum()) - np.repeat(np.cumsum(chunks) - chunks, chunks)  # 0: the top chunk
        self.last = last[has][owner]
        self.users = has[owner].astype(np.int64)
        self.room = chunks * length - (last[has] - first + 1)  # per user: positions its lowest chunk leaves unused
        self.owner = owner
        self._place(np.zeros(len(has), dtype=np.int64))

    def _place(self, up: np.ndarray) -> None:
        """Chunk ``k`` of a user (0: the top) ends ``k * L - up`` before the last target (the top one at it) and
        starts its loss after the end of chunk ``k + 1``."""
        up = up[self.owner]
        self.ends = np.where(self.step == 0, self.last, self.last - self.step * self.length + up)
        self.lows = self.last - (self.step + 1) * self.length + up + 1

    def __len__(self) -> int:
        return len(self.ends)

    def begin_epoch(self, rng: np.random.Generator) -> None:
        if self.shift:
            self._place(rng.integers(0, self.room + 1))

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        ends, users = self.ends[index], self.users[index]
        starts = self.data.offsets[users]
        window = gather_histories(self.data, starts, ends + 1, self.length + 1)
        target_pos = ends[:, None] - self.length + 1 + np.arange(self.length)[None, :]
        valid = (target_pos > starts[:, None]) & (target_pos >= self.lows[index, None])
        mask = valid & self.is_target[np.where(valid, target_pos, 0)]
        return {
            "users": torch.from_numpy(users),
            "items": window[:, :-1],
            "targets": window[:, 1:],
            "target_ratings": torch.from_numpy(self.data.ratings[np.maximum(target_pos, 0)] * mask),
            "mask": torch.from_numpy(mask),
        }
