"""The transformer with a user tower: next-item prediction from a window of recent items plus the user."""

from __future__ import annotations

from typing import Literal

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from recplug import hookimpl
from recplug.batches import SequenceChunks, WindowExamples
from recplug.data import Interactions
from recplug.errors import RecplugError
from recplug.interfaces import ExampleSource, Model, exclude
from recplug.split import EvalCases, TrainView

from .modules import UserTowerTransformer

_ge0 = attrs.validators.ge(0)
_ge1 = attrs.validators.ge(1)
_dropout = [attrs.validators.ge(0.0), attrs.validators.lt(1.0)]


@attrs.frozen
class TransformerOptions:
    """Defaults are the seed write-up's sizes."""

    context_length: int = attrs.field(default=5, validator=_ge1, metadata={"doc": "Items of history the model sees."})
    embedding_dim: int = attrs.field(default=32, validator=_ge1, metadata={"doc": "Movie tower width."})
    num_layers: int = attrs.field(default=4, validator=_ge0, metadata={"doc": "Transformer blocks."})
    num_heads: int = attrs.field(default=4, validator=_ge1, metadata={"doc": "Attention heads per block."})
    user_embedding_dim: int = attrs.field(
        default=32, validator=_ge0, metadata={"doc": "User tower width (0: no user tower)."}
    )
    interaction_hidden: list[int] = attrs.field(
        factory=lambda: [16], metadata={"doc": "Hidden sizes of the interaction MLP (Linear+ReLU each)."}
    )
    join: Literal["flatten", "last"] = attrs.field(
        default="flatten",
        metadata={"doc": "'flatten' (seed): user vector joined to every position, window flattened; "
                         "'last': last position's output joined with the user vector."},
    )
    embedding_dropout: float = attrs.field(default=0.1, validator=_dropout, metadata={"doc": "Dropout on embeddings."})
    attention_dropout: float = attrs.field(default=0.1, validator=_dropout, metadata={"doc": "Dropout on attention."})
    residual_dropout: float = attrs.field(default=0.1, validator=_dropout, metadata={"doc": "Dropout on residuals."})
    layer_norm_eps: float = attrs.field(default=1e-5, validator=attrs.validators.gt(0.0), metadata={"doc": "LayerNorm epsilon."})
    init_range: float = attrs.field(
        default=0.1, validator=attrs.validators.gt(0.0), metadata={"doc": "Uniform init range of embeddings and MLP."}
    )
    label_smoothing: float = attrs.field(default=0.0, validator=_dropout, metadata={"doc": "Cross-entropy label smoothing."})
    output: Literal["mlp", "tied"] = attrs.field(
        default="mlp",
        metadata={"doc": "'mlp' (seed): bias-free Linear over the vocabulary. 'tied': dot product with the item "
                         "embeddings (the features are projected to embedding_dim)."},
    )
    user_ids: bool = attrs.field(default=True, metadata={"doc": "Give each user an id embedding in the user tower."})
    user_features: list[Literal["gender", "age", "occupation"]] = attrs.field(
        factory=list, metadata={"doc": "users.dat features embedded in the user tower (ML-1M, ML-100K)."}
    )
    item_features: list[Literal["genres", "year"]] = attrs.field(
        factory=list, metadata={"doc": "movies.dat features added to the item embeddings."}
    )
    skip_seen: bool = attrs.field(
        default=False,
        metadata={"doc": "Never recommend an item already in the user's history, even where the protocol would "
                         "allow it (the seed write-up's 'penalise repeats' idea)."},
    )
    loss_skips_seen: bool = attrs.field(
        default=False,
        metadata={"doc": "Leave the items already in the window out of the training softmax (they are never the "
                         "answer when repeats are excluded), so the loss spends no effort pushing them down."},
    )
    objective: Literal["window", "all_positions"] = attrs.field(
        default="window",
        metadata={"doc": "'window' (seed): one target per window, the item after it. 'all_positions': chunks of "
                         "each user's sequence, the next item predicted at every position under the causal mask "
                         "(needs join = 'last'); each training target is seen once per epoch."},
    )

    def __attrs_post_init__(self) -> None:
        if self.objective == "all_positions" and self.join != "last":
            raise ValueError("'join' must be 'last' when objective = 'all_positions'")


class Transformer(Model):
    """GPT-style causal transformer over recent items, joined with a user embedding through an MLP."""

    options: TransformerOptions

    def build(self, data: Interactions) -> UserTowerTransformer:
        o = self.options
        return UserTowerTransformer(
            n_items=data.n_items, n_users=data.n_users, pad_token=data.pad_token, context=o.context_length,
            dim=o.embedding_dim, layers=o.num_layers, heads=o.num_heads, user_dim=o.user_embedding_dim,
            hidden=list(o.interaction_hidden), join=o.join, embedding_dropout=o.embedding_dropout,
            attention_dropout=o.attention_dropout, residual_dropout=o.residual_dropout, eps=o.layer_norm_eps,
            init_range=o.init_range, output=o.output, user_ids=o.user_ids,
            genres=genre_matrix(data) if "genres" in o.item_features else None,
            years=year_index(data) if "year" in o.item_features else None,
            user_features=user_codes(data, o.user_features) if o.user_features else None,
        )  # fmt: skip

    def training_examples(self, train: TrainView) -> ExampleSource:
        if self.options.objective == "all_positions":
            return SequenceChunks(train, self.options.context_length)
        return WindowExamples(train.data, train.target_positions, self.options.context_length)

    def validation_examples(self, data: Interactions, cases: EvalCases) -> WindowExamples:
        return WindowExamples(data, cases.target_pos, self.options.context_length)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = batch["items"]
        if "mask" in batch:  # all positions: logits only where the next item is a training target
            mask = batch["mask"]
            features = self.module.position_features(batch["users"], items)[mask]
            logits, targets = self.module.output(features), batch["targets"][mask]
            seen = _seen_so_far(items, self.n_items)[mask] if self.options.loss_skips_seen else None
        else:
            logits, targets = self.module(batch["users"], items), batch["targets"]
            seen = _seen_so_far(items, self.n_items)[:, -1] if self.options.loss_skips_seen else None
        if seen is not None:  # items already in the window cannot be the answer: leave them out of the softmax
            seen[torch.arange(len(targets), device=seen.device), targets] = False
            logits = logits.masked_fill(seen, float("-inf"))
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.options.label_smoothing)

    @torch.no_grad()
    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        length = self.options.context_length
        window = histories[:, -length:]
        if window.shape[1] < length:  # short histories: pad on the left
            window = F.pad(window, (length - window.shape[1], 0), value=self.pad_token)
        self.module.eval()
        scores = self.module(users.to(self.device), window.to(self.device)).float()
        return exclude(scores, histories) if self.options.skip_seen else scores


def _seen_so_far(items: torch.Tensor, n_items: int) -> torch.Tensor:
    """``[B, L, n_items]`` bool: the items among ``items[b, :t + 1]`` (padding ignored)."""
    onehot = torch.zeros(*items.shape, n_items + 1, dtype=torch.uint8, device=items.device)
    onehot.scatter_(2, items.unsqueeze(2), 1)
    return torch.cummax(onehot, dim=1).values[..., :n_items].bool()


def genre_matrix(data: Interactions) -> torch.Tensor:
    """``[n_items + 1, n_genres]``: each item's genres, rows summing to 1 (the padding row is zero)."""
    genres = _item_column(data, "genres").fillna("").astype(str).str.get_dummies(sep="|")
    matrix = torch.zeros(data.n_items + 1, max(genres.shape[1], 1))
    values = torch.tensor(genres.to_numpy(np.float32))
    matrix[: data.n_items, : values.shape[1]] = values / values.sum(1, keepdim=True).clamp(min=1)
    return matrix


def year_index(data: Interactions) -> torch.Tensor:
    """``[n_items + 1]``: release year as an index from the earliest year (0: unknown year or padding)."""
    years = _item_column(data, "year").astype("Float64").fillna(0).to_numpy(np.int64)
    known = years > 0
    index = np.zeros(data.n_items + 1, dtype=np.int64)
    index[: data.n_items][known] = years[known] - years[known].min() + 1 if known.any() else 0
    return torch.from_numpy(index)


def user_codes(data: Interactions, columns: list[str]) -> torch.Tensor:
    """``[n_users, len(columns)]`` integer codes of categorical user features (sorted categories)."""
    if data.user_info is None:
        raise RecplugError("user_features need user metadata (users.dat), which this dataset lacks")
    codes = [data.user_info[c].astype(str).astype("category").cat.codes.to_numpy(np.int64) for c in columns]
    return torch.from_numpy(np.stack(codes, axis=1))


def _item_column(data: Interactions, column: str):
    if data.item_info is None or column not in data.item_info:
        raise RecplugError(f"item_features need the item metadata column {column!r}, which this dataset lacks")
    return data.item_info[column]


@hookimpl
def register_components(register) -> None:
    register.model("transformer", Transformer, TransformerOptions)
