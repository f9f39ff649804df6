"""Item-based baselines: ItemKNN (item-item cosine neighbours) and EASE (a closed-form item-item model).

Both learn an item-item matrix ``W`` from the training interactions (a binary user x item matrix ``X``, each
user-item pair once) and score a history by summing the rows of its items: ``scores = x @ W``, ``x`` the history's
multi-hot vector. They score any history, so they serve new users as well as known ones.

- ``itemknn``: ``W[i, j]`` = the similarity of items i and j, kept for the ``neighbours`` most similar j of each i.
  Cosine: ``|U_i & U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink)``; asymmetric cosine with ``alpha``:
  ``|U_i & U_j| / (|U_i|^alpha |U_j|^(1 - alpha) + shrink)`` (``alpha`` 0.5 is the cosine), ``U_i`` the users of i.
- ``ease`` (Steck, WWW 2019): ``W = I - P / diag(P)`` with ``P = (X^T X + l2 I)^-1``, so ``diag(W) = 0``: the
  least-squares item-item regression without self-similarity, in one matrix inverse.
"""

from __future__ import annotations

from typing import Literal

import attrs
import numpy as np
import torch

from recplug.api import Baseline, EvalCases, Interactions, RunContext, TrainView, hookimpl

_BLOCK_ITEMS = 512
"""ItemKNN computes similarities for this many items at a time (memory: block x items floats)."""


@attrs.frozen
class ItemKNNOptions:
    neighbours: int = attrs.field(
        default=100, validator=attrs.validators.ge(1),
        metadata={"doc": "Most similar items kept per item (the rest of its row of W is zero)."},
    )  # fmt: skip
    similarity: Literal["cosine", "asymmetric"] = attrs.field(
        default="cosine", metadata={"doc": "'cosine', or 'asymmetric' cosine weighted by `alpha`."}
    )
    alpha: float = attrs.field(
        default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)],
        metadata={"doc": "Asymmetric cosine only: the exponent of the history item's user count (0.5 = cosine)."},
    )  # fmt: skip
    shrink: float = attrs.field(
        default=0.0, validator=attrs.validators.ge(0.0),
        metadata={"doc": "Added to every similarity's denominator: damps pairs of rarely seen items."},
    )  # fmt: skip


@attrs.frozen
class EASEOptions:
    l2: float = attrs.field(
        default=500.0, validator=attrs.validators.gt(0.0),
        metadata={"doc": "L2 regularisation lambda added to the diagonal of X^T X (the paper tunes 100-1,000)."},
    )  # fmt: skip


class ItemMatrixBaseline(Baseline):
    """Scores a history as the sum of its items' rows of an item-item matrix (``self.weights``, dense or sparse)."""

    weights: torch.Tensor

    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        multi_hot = torch.zeros(len(histories), self.n_items + 1)
        multi_hot.scatter_(1, histories.clamp(max=self.n_items), 1.0)  # padding lands in the extra column
        history = multi_hot[:, : self.n_items]
        if self.weights.is_sparse:
            return torch.sparse.mm(self.weights.t(), history.t()).t()
        return history @ self.weights

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.weights.is_sparse:
            w = self.weights.coalesce()
            return {"indices": w.indices(), "values": w.values()}
        return {"weights": self.weights}

    def load_state_dict(self, state: dict[str, torch.Tensor], data: Interactions) -> None:
        self.n_items, self.pad_token = data.n_items, data.pad_token
        if "weights" in state:
            self.weights = state["weights"]
        else:
            self.weights = torch.sparse_coo_tensor(state["indices"], state["values"], (data.n_items, data.n_items),
                                                   check_invariants=True).coalesce()


class ItemKNN(ItemMatrixBaseline):
    """Item-based nearest neighbours: a history's score for j sums j's similarity to each item of the history."""

    options: ItemKNNOptions

    def fit(self, train: TrainView, validation: EvalCases, context: RunContext) -> None:
        self.n_items, self.pad_token = train.data.n_items, train.data.pad_token
        x = train.user_item_matrix()
        by_item = x.T.tocsr()
        counts = np.asarray(x.sum(axis=0)).ravel()
        alpha = self.options.alpha if self.options.similarity == "asymmetric" else 0.5
        keep = min(self.options.neighbours, max(self.n_items - 1, 1))
        rows, columns, values = [], [], []
        for lo in range(0, self.n_items, _BLOCK_ITEMS):
            block = np.arange(lo, min(lo + _BLOCK_ITEMS, self.n_items))
            common = torch.from_numpy((by_item[block] @ x).toarray())  # [block, items]: users in common
            norm = np.power(counts[block], alpha)[:, None] * np.power(counts, 1 - alpha)[None, :] + self.options.shrink
            similarity = common / torch.from_numpy(np.maximum(norm, 1e-12).astype(np.float32))
            similarity[torch.arange(len(block)), torch.from_numpy(block)] = 0.0  # an item is not its own neighbour
            top = torch.topk(similarity, keep, dim=1)
            found = top.values > 0
            rows.append(torch.from_numpy(block)[:, None].expand(-1, keep)[found])
            columns.append(top.indices[found])
            values.append(top.values[found])
        indices = torch.stack([torch.cat(rows), torch.cat(columns)])
        self.weights = torch.sparse_coo_tensor(indices, torch.cat(values), (self.n_items, self.n_items),
                                               check_invariants=True).coalesce()


class EASE(ItemMatrixBaseline):
    """Embarrassingly shallow autoencoder: a dense item-item regression with a zero diagonal, in closed form."""

    options: EASEOptions

    def fit(self, train: TrainView, validation: EvalCases, context: RunContext) -> None:
        self.n_items, self.pad_token = train.data.n_items, train.data.pad_token
        x = train.user_item_matrix()
        gram = torch.from_numpy((x.T @ x).toarray().astype(np.float64))
        gram.diagonal().add_(self.options.l2)
        precision = torch.linalg.inv(gram)  # symmetric positive definite: one solve
        weights = -precision / precision.diagonal()[None, :]
        weights.diagonal().zero_()
        self.weights = weights.float()


@hookimpl
def register_components(register) -> None:
    register.baseline("itemknn", ItemKNN, ItemKNNOptions)
    register.baseline("ease", EASE, EASEOptions)
