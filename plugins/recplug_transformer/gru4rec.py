"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018): a GRU reads the history in order and
predicts the next item at every position.

The losses are those of GRU4Rec's own modern implementation: cross-entropy over every item, or BPR-max over
``negatives`` items shared by the batch (drawn from the batch's targets, i.e. by popularity, as GRU4Rec's
mini-batch sampling does, or uniformly). With ``tied_output`` the output layer reuses the item embeddings
(GRU4Rec's "constrained embedding").
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import nn

from recplug.api import Interactions, Model, SequenceChunks, TrainView

from . import cpu_kernels, losses
from .dropout import Dropout

_dropout = [attrs.validators.ge(0.0), attrs.validators.lt(1.0)]
_width = [attrs.validators.ge(1), attrs.validators.le(8192)]


@attrs.frozen
class GRU4RecOptions:
    """Defaults suit ML-1M leave-one-out (cross-entropy, one layer, tied output)."""

    hidden_dim: int = attrs.field(default=128, validator=_width, metadata={"doc": "Embedding and GRU width."})
    num_layers: int = attrs.field(default=1, validator=[attrs.validators.ge(1), attrs.validators.le(16)],
                                  metadata={"doc": "Stacked GRU layers."})  # fmt: skip
    context_length: int = attrs.field(default=200, validator=_width, metadata={"doc": "Items of history the GRU reads."})
    embedding_dropout: float = attrs.field(default=0.2, validator=_dropout, metadata={"doc": "Dropout on inputs."})
    hidden_dropout: float = attrs.field(default=0.1, validator=_dropout, metadata={"doc": "Dropout on GRU outputs."})
    tied_output: bool = attrs.field(
        default=True, metadata={"doc": "Score items with their input embeddings (GRU4Rec's constrained embedding)."}
    )
    loss: Literal["cross_entropy", "bpr_max"] = attrs.field(
        default="cross_entropy",
        metadata={"doc": "'cross_entropy': softmax over every item. 'bpr_max': BPR-max over 'negatives' shared "
                         "negatives."},
    )  # fmt: skip
    negatives: int = attrs.field(
        default=256, validator=[attrs.validators.ge(1), attrs.validators.le(1_000_000)],
        metadata={"doc": "Negatives per batch (bpr_max)."},
    )  # fmt: skip
    negative_source: Literal["in_batch", "uniform"] = attrs.field(
        default="in_batch", metadata={"doc": "'in_batch': among the batch's targets (by popularity); 'uniform'."}
    )
    bpr_max_regularization: float = attrs.field(
        default=1.0, validator=attrs.validators.ge(0.0), metadata={"doc": "Weight of BPR-max's score regularisation."}
    )


class GRU4RecModule(nn.Module):
    """Item embeddings, a GRU, and the output vectors that score its states."""

    def __init__(self, n_items: int, options: GRU4RecOptions) -> None:
        super().__init__()
        self.n_items = n_items
        self.embedding = nn.Embedding(n_items + 1, options.hidden_dim, padding_idx=n_items)
        self.input_dropout = Dropout(options.embedding_dropout)
        self.gru = nn.GRU(options.hidden_dim, options.hidden_dim, options.num_layers, batch_first=True,
                          dropout=options.hidden_dropout if options.num_layers > 1 else 0.0)  # fmt: skip
        self.output_dropout = Dropout(options.hidden_dropout)
        self.output = None if options.tied_output else nn.Embedding(n_items, options.hidden_dim)
        nn.init.normal_(self.embedding.weight, std=options.hidden_dim**-0.5)
        with torch.no_grad():
            self.embedding.weight[n_items].zero_()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden state after every position ``[B, L, H]`` of left-padded ``items``.

        Padding never reaches the GRU: each row is moved to the left, run as a packed sequence of its real
        length, and moved back (a GRU stepping over padding would change its state, even with zero inputs).
        """
        length = items.shape[1]
        real = (items != self.n_items).sum(1)
        shift = (length - real)[:, None]
        steps = torch.arange(length, device=items.device)[None, :]
        left_aligned = items.gather(1, (steps + shift) % length)
        inputs = self.input_dropout(self.embedding(left_aligned))
        packed = nn.utils.rnn.pack_padded_sequence(inputs, real.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        hidden, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=length)
        back = ((steps - shift) % length)[:, :, None].expand(-1, -1, hidden.shape[2])
        return self.output_dropout(hidden.gather(1, back))

    def output_vectors(self, items: torch.Tensor | None) -> torch.Tensor:
        """The output vectors ``[S, H]`` of ``items`` (None: every item)."""
        table = self.embedding.weight[: self.n_items] if self.output is None else self.output.weight
        return table if items is None else table[items]


class GRU4Rec(Model):
    """GRU4Rec: a GRU over the item sequence predicts the next item at every position."""

    options: GRU4RecOptions
    module: GRU4RecModule

    def build(self, data: Interactions) -> GRU4RecModule:
        return GRU4RecModule(data.n_items, self.options)

    def training_examples(self, train: TrainView) -> SequenceChunks:
        if self.device.type == "cpu":
            cpu_kernels.prepare()  # its dropout masks, before the first step
        return SequenceChunks(train, self.options.context_length)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask, o = batch["mask"], self.options
        features, targets = self.module(batch["items"])[mask], batch["targets"][mask]
        vectors = self.module.output_vectors
        if o.loss == "cross_entropy":
            return losses.full_softmax_mean(vectors, features, targets)
        negatives = losses.draw_negatives(targets, o.negatives, self.n_items, o.negative_source)
        logits = losses.sampled_logits(vectors, features, targets, negatives, log_q=None)
        return losses.bpr_max(logits, o.bpr_max_regularization).mean()

    @torch.no_grad()
    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """The GRU's state after the last ``context_length`` items, scored against every item."""
        self.module.eval()
        window = histories[:, -self.options.context_length :].to(self.device)
        if window.shape[1] == 0:
            window = torch.full((len(histories), 1), self.n_items, dtype=torch.int64, device=self.device)
        return (self.module(window)[:, -1] @ self.module.output_vectors(None).T).float()
