"""Popularity baselines: most-popular by count, and the seed write-up's top-rated-among-popular."""

from __future__ import annotations

from typing import Literal

import attrs
import numpy as np
import torch

from recplug.api import Baseline, EvalCases, Interactions, RunContext, TrainView, hookimpl


@attrs.frozen
class PopularityOptions:
    method: Literal["count", "mean_rating_of_popular"] = attrs.field(
        default="count",
        metadata={
            "doc": "'count': most ratings first. 'mean_rating_of_popular' (the seed's): among items whose rating "
            "count is at or above the `percentile` of counts, highest mean rating first; the rest follow by count."
        },
    )
    percentile: float = attrs.field(
        default=95.0,
        validator=[attrs.validators.ge(0.0), attrs.validators.le(100.0)],
        metadata={"doc": "Popularity cut-off for 'mean_rating_of_popular' (percentile of rated items' counts)."},
    )


class Popularity(Baseline):
    """Recommends the same popular items to everyone (fitted on training interactions only)."""

    options: PopularityOptions

    def fit(self, train: TrainView, validation: EvalCases, context: RunContext) -> None:
        data = train.data
        self.n_items, self.pad_token = data.n_items, data.pad_token
        items = data.items[train.visible]
        counts = np.bincount(items, minlength=data.n_items).astype(np.float64)
        by_count = counts / (counts.max() + 1.0)  # in [0, 1)
        if self.options.method == "count":
            scores = by_count
        else:
            sums = np.bincount(items, weights=data.ratings[train.visible], minlength=data.n_items)
            mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
            threshold = np.percentile(counts[counts > 0], self.options.percentile)
            popular = counts >= threshold
            # Popular items score by mean rating (>= 1); the others below them, by count.
            scores = np.where(popular, 1.0 + mean, by_count)
        self.item_scores = torch.tensor(scores, dtype=torch.float32)

    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        return self.item_scores.expand(len(users), -1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"item_scores": self.item_scores}

    def load_state_dict(self, state: dict[str, torch.Tensor], data: Interactions) -> None:
        self.item_scores = state["item_scores"]
        self.n_items, self.pad_token = data.n_items, data.pad_token


@hookimpl
def register_components(register) -> None:
    register.baseline("popularity", Popularity, PopularityOptions)
