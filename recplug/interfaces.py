"""The component interfaces a plugin implements: Dataset, Splitter, Recommender, Metric.

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
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import torch

if TYPE_CHECKING:
    import pandas as pd

    from .data import Interactions
    from .evaluation import RankedLists
    from .split import EvalCases, Split, TrainView
    from .training import TrainingOptions


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


class Dataset(ABC):
    """Loads interactions. ``load`` returns tokenised, time-ordered :class:`~recplug.data.Interactions`."""

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

    @abstractmethod
    def fit(self, train: TrainView, validation: EvalCases, context: RunContext) -> None:
        """Learn from the training view (validation cases may drive early stopping)."""

    @abstractmethod
    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, n_items]`` for users ``[B]`` (int64 tokens) given left-padded histories ``[B, H]``.

        Histories hold item tokens, most recent last, padded on the left with
        ``pad_token``. A user token may be ``-1`` for a user the recommender never
        saw (cold start): then only the history can be used.
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
        if exclude_items is not None:
            scores = exclude(scores, exclude_items)
        top = torch.topk(scores, k=min(k, scores.shape[1]), dim=1)
        return top.indices, top.values


class Baseline(Recommender):
    """A recommender fitted directly from data (no gradient training)."""

    kind = "baseline"


class Model(Recommender):
    """A torch recommender trained by recplug's training loop (see :mod:`recplug.training`).

    Subclasses build their ``torch.nn.Module`` in :meth:`build`, describe training
    examples in :meth:`training_examples` and the loss in :meth:`loss`; :meth:`fit`
    runs the generic loop with the ``training`` options of the spec.
    """

    kind = "model"
    module: torch.nn.Module

    def __init__(self, options: Any, training: TrainingOptions | None = None) -> None:
        super().__init__(options)
        from .training import TrainingOptions

        self.training = training or TrainingOptions()
        self.device = torch.device("cpu")

    @abstractmethod
    def build(self, data: Interactions) -> torch.nn.Module:
        """Create the module for this dataset's vocabulary sizes (called before training or loading)."""

    @abstractmethod
    def training_examples(self, train: TrainView) -> ExampleSource:
        """The training examples: an indexable source of batches."""

    def validation_examples(self, data: Interactions, cases: EvalCases) -> ExampleSource | None:
        """Examples for the validation loss (default: none, so only validation NDCG@10 is measured)."""
        return None

    @abstractmethod
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of one batch (a scalar)."""

    def prepare(self, data: Interactions) -> None:
        """Build the module for ``data`` and remember its vocabulary sizes."""
        self.n_items = data.n_items
        self.pad_token = data.pad_token
        self.module = self.build(data)

    def fit(self, train: TrainView, validation: EvalCases, context: RunContext) -> None:
        from .training import train_model

        self.prepare(train.data)
        train_model(self, train, validation, context)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], data: Interactions) -> None:
        self.prepare(data)
        self.module.load_state_dict(state)
        self.module.eval()

    def to(self, device: torch.device | str) -> Model:
        self.device = torch.device(device)
        self.module.to(self.device)
        return self


class ExampleSource(ABC):
    """Training examples addressed by index; :meth:`batch` gathers many at once (vectorised)."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def batch(self, index: Any) -> dict[str, torch.Tensor]:
        """The examples at ``index`` (an int64 numpy array) as a dict of CPU tensors."""


class Metric(ABC):
    """A ranking metric at cutoff ``k`` over the recommended lists of all evaluation cases."""

    higher_is_better: ClassVar[bool] = True

    def __init__(self, options: Any) -> None:
        self.options = options

    @abstractmethod
    def compute(self, ranked: RankedLists, k: int) -> float:
        """The metric's value at cutoff ``k`` (averaged over cases where it is a per-case metric)."""


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
