"""The component interfaces a plugin implements: Dataset, Splitter and Recommender (Baseline; Model lives with
the training loop, Metric with the ranked lists it reduces).

Every component class is constructed as ``cls(options)`` where ``options`` is an
instance of the attrs class registered with it (built from the spec).

The scoring contract
--------------------
Every recommender — trained model or fitted baseline — answers one question:
given a batch of users and their histories, how much does each user want each
item? :meth:`Recommender.score` returns a ``[batch, n_items]`` float tensor.
Evaluation, the CLI and the model registry only ever use :meth:`score` and
:meth:`Recommender.recommend` (which adds exclusion and top-k on top).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import torch

if TYPE_CHECKING:
    import pandas as pd

    from ._data import Interactions
    from ._split import EvalCases, Split, TrainView


@attrs.frozen
class NoOptions:
    """Options class for components that take none."""


@attrs.frozen
class RunContext:
    """What the runner tells a component about the run it is part of."""

    seed: int = 0
    device: str = "cpu"
    run_dir: str | None = None
    """Where the component may write files (checkpoints, tensorboard); none for in-memory runs."""
    resume: bool = False
    """Continue from checkpoints found in ``run_dir``."""
    on_epoch: Callable[[int, dict[str, float]], None] | None = attrs.field(default=None, eq=False)
    """Called after each validated epoch with the epoch (from 1) and its summary (``validation/ndcg@10``, ...);
    it may raise to stop training (``recplug tune`` prunes a trial this way). A model with its own training loop
    should call it too."""


class Dataset(ABC):
    """Loads interactions. ``load`` returns tokenised, time-ordered :class:`~recplug._data.Interactions`."""

    def __init__(self, options: Any) -> None:
        self.options = options

    @abstractmethod
    def load(self, context: RunContext) -> Interactions: ...


class Splitter(ABC):
    """Splits interactions into training data and validation/test cases (an evaluation protocol)."""

    def __init__(self, options: Any) -> None:
        self.options = options

    @abstractmethod
    def split(self, data: Interactions, context: RunContext) -> Split: ...


class Recommender(ABC):
    """Anything that scores items for users. Subclass :class:`Model` or :class:`Baseline`."""

    kind: ClassVar[str]

    def __init__(self, options: Any) -> None:
        self.options = options
        self.n_items = 0
        self.pad_token = 0
        self.device = torch.device("cpu")
        """Where it computes (a trained model may move to a GPU; recplug spreads CPU inference over the cores)."""
        self.history: list[dict[str, float]] = []
        """Training curves: a summary per epoch (``epoch``, ``loss/train``, ``validation/ndcg@10``, ...), filled
        by recplug's trainer; a plugin with its own loop may fill it too. The run report plots it."""

    @abstractmethod
    def fit(self, train: TrainView, validation: EvalCases, context: RunContext) -> None:
        """Learn from the training view (validation cases may drive early stopping)."""

    @abstractmethod
    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, n_items]`` for users ``[B]`` (int64 tokens) given left-padded histories ``[B, H]``.

        Histories hold item tokens, most recent last, padded on the left with
        ``pad_token``. A user token may be ``-1`` for a user the recommender never
        saw (cold start): then only the history can be used.

        Bulk inference on the CPU (``recommend --all-users``, encoding every user for ``recplug serve``) calls
        it (and :meth:`encode`) from several threads at once, one batch each: keep it free of shared mutable
        state, or set :attr:`device` to another device than the CPU.
        """

    def score_new_users(self, features: pd.DataFrame, histories: torch.Tensor) -> torch.Tensor:
        """Scores for users never seen in training, described by ``features`` (a row per user, columns as in
        the dataset's user metadata, e.g. gender, age, occupation).

        The default ignores the features and scores them as cold-start users (token ``-1``); a recommender
        whose user tower is built from features overrides this.
        """
        return self.score(torch.full((len(histories),), -1, dtype=torch.int64), histories)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The fitted state as plain tensors: what the model registry stores."""
        raise NotImplementedError(f"{type(self).__name__} does not support saving")

    def load_state_dict(self, state: dict[str, torch.Tensor], data: Interactions) -> None:
        """Restore a fitted state for the vocabularies of ``data`` (its interactions may be empty)."""
        raise NotImplementedError(f"{type(self).__name__} does not support loading")

    @torch.no_grad()
    def recommend(
        self,
        users: torch.Tensor,
        histories: torch.Tensor,
        k: int,
        exclude_items: torch.Tensor | None = None,
        exclude_history: bool = True,
        new_user_features: pd.DataFrame | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` (item tokens ``[B, k]``, scores ``[B, k]``).

        Items in ``exclude_items`` (padded like histories, or a boolean ``[B, n_items]`` mask) are never
        recommended; by default (``exclude_history``) those are the histories themselves. With
        ``new_user_features`` the users are new ones, scored by :meth:`score_new_users`.
        """
        if new_user_features is not None:
            scores = self.score_new_users(new_user_features, histories).float()
        else:
            scores = self.score(users, histories).float()
        if exclude_items is None and exclude_history:
            exclude_items = histories
        return top_k(scores, k, exclude_items)

    def encode(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """Optional (dot-product recommenders): a vector per user ``[B, H]`` whose :meth:`decode` gives the
        user's scores, before any exclusion. ``recplug serve`` encodes every known user once per loaded version
        and answers them with :meth:`decode` alone. Recommenders that do not override it are scored in full."""
        raise NotImplementedError(f"{type(self).__name__} does not encode users")

    def decode(self, vectors: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, n_items]`` of vectors from :meth:`encode`."""
        raise NotImplementedError(f"{type(self).__name__} does not encode users")

    @property
    def encodes(self) -> bool:
        """Whether this recommender implements :meth:`encode` and :meth:`decode`."""
        return type(self).encode is not Recommender.encode


class Baseline(Recommender):
    """A recommender fitted directly from data (no gradient training)."""

    kind = "baseline"


def top_k(scores: torch.Tensor, k: int, exclude_items: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best items of each row (tokens and scores), leaving out ``exclude_items`` (see :func:`exclude`)."""
    scores = scores.float()
    if exclude_items is not None:
        scores = exclude(scores, exclude_items)
    top = torch.topk(scores, k=min(k, scores.shape[1]), dim=1)
    return top.indices, top.values


def exclude(scores: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
    """``scores`` with every item of each row's history set to ``-inf`` (padding ignored).

    ``histories`` is either a padded token tensor ``[B, H]`` or a boolean mask ``[B, n_items]``.
    """
    if histories.dtype == torch.bool:
        return scores.masked_fill(histories.to(scores.device), float("-inf"))
    n_items = scores.shape[1]
    index = histories.clamp(max=n_items).to(scores.device)
    padded = torch.cat([scores, scores.new_zeros(scores.shape[0], 1)], dim=1)
    padded.scatter_(1, index, float("-inf"))
    return padded[:, :n_items]
