"""GRU4Rec and precision@k for recplug: a model and a metric from a third-party package."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from recplug.api import Interactions, Metric, Model, RankedLists, SequenceChunks, TrainView, hookimpl

RECPLUG_PLUGIN_API = 1  # the recplug plugin API this package was written for


@attrs.frozen
class GRU4RecOptions:
    hidden_dim: int = attrs.field(default=64, validator=attrs.validators.ge(1), metadata={"doc": "GRU width."})
    num_layers: int = attrs.field(default=1, validator=attrs.validators.ge(1), metadata={"doc": "GRU layers."})
    context_length: int = attrs.field(default=50, validator=attrs.validators.ge(1), metadata={"doc": "Items seen."})
    dropout: float = attrs.field(default=0.1, validator=attrs.validators.ge(0.0), metadata={"doc": "Embedding dropout."})


class GRU4RecModule(nn.Module):
    def __init__(self, n_items: int, options: GRU4RecOptions) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_items + 1, options.hidden_dim, padding_idx=n_items)
        self.dropout = nn.Dropout(options.dropout)
        self.gru = nn.GRU(options.hidden_dim, options.hidden_dim, options.num_layers, batch_first=True)
        self.output = nn.Linear(options.hidden_dim, n_items)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden state after every position ``[B, L, H]`` of left-padded ``items``.

        Padding never reaches the GRU: each row is moved to the left, run as a packed sequence of its real
        length, and moved back (a GRU stepping over padding would change its state, even with zero inputs).
        """
        length = items.shape[1]
        real = (items != self.embedding.padding_idx).sum(1)
        shift = (length - real)[:, None]
        steps = torch.arange(length, device=items.device)[None, :]
        left_aligned = items.gather(1, (steps + shift) % length)
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(self.embedding(left_aligned)), real.clamp(min=1).cpu(),
                                                   batch_first=True, enforce_sorted=False)  # fmt: skip
        hidden, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=length)
        back = ((steps - shift) % length)[:, :, None].expand(-1, -1, hidden.shape[2])
        return hidden.gather(1, back)


class GRU4Rec(Model):
    """GRU4Rec: a GRU over the item sequence predicts the next item at every position."""

    options: GRU4RecOptions

    def build(self, data: Interactions) -> GRU4RecModule:
        return GRU4RecModule(data.n_items, self.options)

    def training_examples(self, train: TrainView) -> SequenceChunks:
        return SequenceChunks(train, self.options.context_length)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.module(batch["items"])[batch["mask"]]
        return F.cross_entropy(self.module.output(hidden), batch["targets"][batch["mask"]])

    @torch.no_grad()
    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        self.module.eval()
        window = histories[:, -self.options.context_length :].to(self.device)
        return self.module.output(self.module(window)[:, -1]).float()


class Precision(Metric):
    """Precision@k: the share of the k recommended items that are relevant (hits / k with one relevant item)."""

    def per_case(self, ranked: RankedLists, k: int) -> torch.Tensor:
        return ranked.hits(k) / k


@hookimpl
def register_components(register) -> None:
    register.model("gru4rec", GRU4Rec, GRU4RecOptions)
    register.metric("precision", Precision)
