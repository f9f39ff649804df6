"""Matrix factorisation for implicit feedback through the `implicit` library: ALS and BPR-MF.

Both are fitted by ``implicit`` (its multi-threaded CPU solvers) on the binary user x item matrix of the
training interactions; recplug keeps the factors and scores with them.

- ``als`` (Hu, Koren and Volinsky, 2008): weighted least squares with confidence ``alpha`` on observed pairs.
  A history is scored through its user vector recomputed in closed form from the history's items (what
  ``implicit``'s ``recalculate_user`` computes), so ALS serves new users and always sees the latest history.
- ``bpr`` (Rendle et al., 2009): pairwise ranking with sampled negatives. Known users are scored with their
  trained vectors; a new user, whom BPR cannot fold in, gets the item biases (popularity-like).

Needs ``pip install 'recplug[implicit]'``; without it ``recplug plugins`` lists both as not available and a spec
naming them says how to install it.
"""

from __future__ import annotations

import importlib.util

import attrs
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from recplug.api import Baseline, EvalCases, Interactions, RunContext, TrainView, hookimpl

INSTALL = "needs the implicit library: pip install 'recplug[implicit]'"


@attrs.frozen
class ALSOptions:
    factors: int = attrs.field(default=64, validator=attrs.validators.ge(1), metadata={"doc": "Latent factors."})
    regularization: float = attrs.field(
        default=0.01, validator=attrs.validators.ge(0.0), metadata={"doc": "L2 regularisation of the factors."}
    )
    alpha: float = attrs.field(
        default=10.0, validator=attrs.validators.gt(0.0), metadata={"doc": "Confidence of an observed interaction."}
    )
    iterations: int = attrs.field(default=15, validator=attrs.validators.ge(1), metadata={"doc": "ALS sweeps."})


@attrs.frozen
class BPROptions:
    factors: int = attrs.field(default=64, validator=attrs.validators.ge(1), metadata={"doc": "Latent factors."})
    learning_rate: float = attrs.field(default=0.01, validator=attrs.validators.gt(0.0), metadata={"doc": "SGD step."})
    regularization: float = attrs.field(
        default=0.01, validator=attrs.validators.ge(0.0), metadata={"doc": "L2 regularisation of the factors."}
    )
    iterations: int = attrs.field(default=100, validator=attrs.validators.ge(1), metadata={"doc": "Epochs of SGD."})


def history_vectors(factors: torch.Tensor, histories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The factors of each history's distinct items ``[B, L, F]`` (padding and repeats zeroed), and which are kept."""
    n_items = factors.shape[0]
    items, _ = histories.clamp(max=n_items).sort(dim=1)
    kept = items < n_items
    kept[:, 1:] &= items[:, 1:] != items[:, :-1]
    padded = torch.cat([factors, factors.new_zeros(1, factors.shape[1])])
    return padded[items] * kept[..., None], kept


class ALS(Baseline):
    """Implicit-feedback ALS (``implicit``); a history's user vector is solved in closed form at scoring time."""

    options: ALSOptions

    def fit(self, train: TrainView, validation: EvalCases, context: RunContext) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        self.n_items, self.pad_token = train.data.n_items, train.data.pad_token
        o = self.options
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; a BLAS thread pool inside it thrashes
            model = AlternatingLeastSquares(factors=o.factors, regularization=o.regularization, alpha=o.alpha,
                                            iterations=o.iterations, random_state=context.seed)  # fmt: skip
            model.fit(train.user_item_matrix(), show_progress=False)
        self.item_factors = torch.from_numpy(np.asarray(model.item_factors, dtype=np.float32))

    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """``u = (Y^T Y + (alpha - 1) Y_h^T Y_h + reg I)^-1 alpha Y_h^T 1``, then ``u @ Y^T``."""
        y = self.item_factors.double()
        o = self.options
        history, _ = history_vectors(y, histories)
        system = y.T @ y + o.regularization * torch.eye(y.shape[1], dtype=y.dtype)
        system = system + (o.alpha - 1.0) * history.transpose(1, 2) @ history
        user = torch.linalg.solve(system, o.alpha * history.sum(1))
        return (user @ y.T).float()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"item_factors": self.item_factors}

    def load_state_dict(self, state: dict[str, torch.Tensor], data: Interactions) -> None:
        self.n_items, self.pad_token = data.n_items, data.pad_token
        self.item_factors = state["item_factors"]


class BPR(Baseline):
    """Bayesian personalised ranking matrix factorisation (``implicit``) with an item bias."""

    options: BPROptions

    def fit(self, train: TrainView, validation: EvalCases, context: RunContext) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        self.n_items, self.pad_token = train.data.n_items, train.data.pad_token
        o = self.options
        with threadpool_limits(1, "blas"):
            model = BayesianPersonalizedRanking(factors=o.factors, learning_rate=o.learning_rate,
                                                regularization=o.regularization, iterations=o.iterations,
                                                random_state=context.seed)  # fmt: skip
            model.fit(train.user_item_matrix(), show_progress=False)
        self.user_factors = torch.from_numpy(np.asarray(model.user_factors, dtype=np.float32))  # [users, F + 1]
        self.item_factors = torch.from_numpy(np.asarray(model.item_factors, dtype=np.float32))  # last column: bias

    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        known = users >= 0
        vectors = torch.zeros(len(users), self.item_factors.shape[1])
        vectors[:, -1] = 1.0  # a new user: the item biases alone
        vectors[known] = self.user_factors[users[known]]
        return vectors @ self.item_factors.T

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def load_state_dict(self, state: dict[str, torch.Tensor], data: Interactions) -> None:
        self.n_items, self.pad_token = data.n_items, data.pad_token
        self.user_factors, self.item_factors = state["user_factors"], state["item_factors"]


@hookimpl
def register_components(register) -> None:
    if importlib.util.find_spec("implicit") is None:
        register.unavailable("baseline", "als", INSTALL)
        register.unavailable("baseline", "bpr", INSTALL)
        return
    register.baseline("als", ALS, ALSOptions)
    register.baseline("bpr", BPR, BPROptions)
