"""YouTube DNN and precision@k for recplug: a model and a metric from a third-party package."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from recplug.api import Interactions, Metric, Model, RankedLists, SequenceChunks, TrainView, hookimpl

RECPLUG_PLUGIN_API = 1  # the recplug plugin API this package was written for


@attrs.frozen
class YouTubeDNNOptions:
    dim: int = attrs.field(default=64, validator=attrs.validators.ge(1), metadata={"doc": "Embedding and layer width."})
    window: int = attrs.field(default=50, validator=attrs.validators.ge(1), metadata={"doc": "Recent items averaged."})
    chunk_length: int = attrs.field(
        default=200, validator=attrs.validators.ge(2), metadata={"doc": "Items per training chunk."}
    )


class YouTubeDNNModule(nn.Module):
    """The mean embedding of the recent items, a ReLU layer, and logits over every item."""

    def __init__(self, n_items: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.hidden = nn.Sequential(nn.Linear(dim, dim), nn.ReLU())
        self.output = nn.Linear(dim, n_items)

    def forward(self, items: torch.Tensor, window: int) -> torch.Tensor:
        """Logits ``[B, L, n_items]`` after each position of left-padded ``items`` ``[B, L]``, each from the mean
        embedding of the ``window`` items up to and including that position (padding left out)."""
        real = (items != self.embedding.padding_idx).float()
        sums = F.pad(self.embedding(items).cumsum(1), (0, 0, window, 0))
        counts = F.pad(real.cumsum(1), (window, 0))
        windowed = (sums[:, window:] - sums[:, :-window]) / (counts[:, window:] - counts[:, :-window]).clamp(min=1)[..., None]
        return self.output(self.hidden(windowed))


class YouTubeDNN(Model):
    """YouTube DNN: the mean embedding of the recent items, a ReLU layer, a softmax over every item.

    The candidate generator of Covington et al. (RecSys 2016), on the watch history alone."""

    options: YouTubeDNNOptions

    def build(self, data: Interactions) -> YouTubeDNNModule:
        return YouTubeDNNModule(data.n_items, self.options.dim)

    def training_examples(self, train: TrainView) -> SequenceChunks:
        return SequenceChunks(train, self.options.chunk_length)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["mask"]
        logits = self.module(batch["items"], self.options.window)[mask]
        return F.cross_entropy(logits, batch["targets"][mask])

    @torch.no_grad()
    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        self.module.eval()
        window = histories[:, -self.options.window :].to(self.device)
        if window.shape[1] == 0:
            window = torch.full((len(histories), 1), self.pad_token, device=self.device)
        return self.module(window, self.options.window)[:, -1].float()


class Precision(Metric):
    """Precision@k: the share of the k recommended items that are relevant (hits / k with one relevant item)."""

    def per_case(self, ranked: RankedLists, k: int) -> torch.Tensor:
        return ranked.hits(k) / k


@hookimpl
def register_components(register) -> None:
    register.model("youtube_dnn", YouTubeDNN, YouTubeDNNOptions)
    register.metric("precision", Precision)
