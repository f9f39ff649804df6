"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer trained to fill in masked items.

Training: chunks of each user's sequence (every training target in one chunk per epoch); each item that is a
training target is replaced by the mask token with probability ``mask_probability`` (at least one per chunk),
and the network predicts the hidden items from both sides (cross-entropy over the catalogue). Inference ("mask
last"): the history followed by the mask token; the output at the mask scores every item.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from recplug.api import Interactions, Model, SequenceChunks, TrainView

from . import cpu_kernels
from .modules import MaskedItemModel

_dropout = [attrs.validators.ge(0.0), attrs.validators.lt(1.0)]


@attrs.frozen
class BERT4RecOptions:
    """The paper's ML-1M settings are the defaults."""

    max_length: int = attrs.field(
        default=200, validator=[attrs.validators.ge(2), attrs.validators.le(8192)],
        metadata={"doc": "Items per sequence, the mask included at inference."},
    )  # fmt: skip
    hidden_units: int = attrs.field(
        default=64, validator=[attrs.validators.ge(1), attrs.validators.le(8192)], metadata={"doc": "Width."}
    )
    num_blocks: int = attrs.field(
        default=2, validator=[attrs.validators.ge(1), attrs.validators.le(128)], metadata={"doc": "Blocks."}
    )
    num_heads: int = attrs.field(
        default=2, validator=[attrs.validators.ge(1), attrs.validators.le(256)],
        metadata={"doc": "Heads (must divide hidden_units)."},
    )  # fmt: skip
    dropout: float = attrs.field(default=0.1, validator=_dropout, metadata={"doc": "Dropout everywhere."})
    mask_probability: float = attrs.field(
        default=0.2, validator=[attrs.validators.gt(0.0), attrs.validators.lt(1.0)],
        metadata={"doc": "Share of training items hidden behind the mask token (the paper's rho)."},
    )  # fmt: skip

    def __attrs_post_init__(self) -> None:
        if self.hidden_units % self.num_heads:
            raise ValueError(f"'num_heads' ({self.num_heads}) must divide 'hidden_units' ({self.hidden_units})")


class BERT4Rec(Model):
    """BERT4Rec: bidirectional self-attention trained by masked-item prediction; recommends with the mask last."""

    options: BERT4RecOptions
    module: MaskedItemModel

    def build(self, data: Interactions) -> MaskedItemModel:
        o = self.options
        return MaskedItemModel(data.n_items, o.max_length, o.hidden_units, o.num_blocks, o.num_heads, o.dropout, 1e-12)

    def training_examples(self, train: TrainView) -> SequenceChunks:
        if self.device.type == "cpu":
            cpu_kernels.prepare()  # its dropout masks, before the first step
        return SequenceChunks(train, self.options.max_length)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        sequence, maskable = batch["targets"], batch["mask"]  # a chunk's items; which of them may be hidden
        hidden = (torch.rand(sequence.shape, device=sequence.device) < self.options.mask_probability) & maskable
        last = maskable.float().cumsum(1).argmax(1)  # a chunk with none hidden hides its last maskable item
        none = ~hidden.any(1) & maskable.any(1)
        hidden[none, last[none]] = True
        inputs = sequence.masked_fill(hidden, self.module.mask_token)
        outputs = self.module.tower(inputs)[hidden]
        return F.cross_entropy(self.module.logits(outputs).float(), sequence[hidden])

    @torch.no_grad()
    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """The output at a mask token placed after the last ``max_length - 1`` items of each history."""
        keep = max(min(self.options.max_length - 1, histories.shape[1]), 0)
        window = histories[:, histories.shape[1] - keep :]
        mask = torch.full((len(histories), 1), self.module.mask_token, dtype=histories.dtype)
        self.module.eval()
        inputs = torch.cat([window, mask], dim=1).to(self.device)
        return self.module.logits(self.module.tower(inputs, last_only=True)[:, -1]).float()
