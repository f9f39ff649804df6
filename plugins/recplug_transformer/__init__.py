"""The sequential models: recplug's transformer with a user tower, SASRec, BERT4Rec and GRU4Rec.

The transformer predicts the next item from a window of recent items plus the user; SASRec is a preset of it,
BERT4Rec (``bert4rec.py``) and GRU4Rec (``gru4rec.py``) share its next-item losses (``losses.py``)."""

from __future__ import annotations

from typing import Literal

import attrs
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from recplug.api import (
    EvalCases,
    ExampleSource,
    Interactions,
    Model,
    RecplugError,
    SequenceChunks,
    TrainingOptions,
    TrainView,
    WindowExamples,
    exclude,
    hookimpl,
)

from . import cpu_kernels, losses
from .bert4rec import BERT4Rec, BERT4RecOptions
from .gru4rec import GRU4Rec, GRU4RecOptions
from .modules import UserTowerTransformer

_ge0 = attrs.validators.ge(0)
_ge1 = attrs.validators.ge(1)
_width = [attrs.validators.ge(1), attrs.validators.le(8192)]  # sizes beyond these are typos, not models


def _hidden_sizes(instance: object, attribute: attrs.Attribute, value: list[int]) -> None:
    if any(not 1 <= size <= 65536 for size in value):
        raise ValueError(f"'{attribute.name}' sizes must be in [1, 65536], got {value}")
_dropout = [attrs.validators.ge(0.0), attrs.validators.lt(1.0)]


@attrs.frozen
class TransformerOptions:
    """Defaults are the seed write-up's sizes."""

    context_length: int = attrs.field(default=5, validator=_width, metadata={"doc": "Items of history the model sees."})
    embedding_dim: int = attrs.field(default=32, validator=_width, metadata={"doc": "Movie tower width."})
    num_layers: int = attrs.field(
        default=4, validator=[_ge0, attrs.validators.le(128)], metadata={"doc": "Transformer blocks."}
    )
    num_heads: int = attrs.field(
        default=4, validator=[_ge1, attrs.validators.le(256)],
        metadata={"doc": "Attention heads per block (must divide embedding_dim)."},
    )  # fmt: skip
    user_embedding_dim: int = attrs.field(
        default=32, validator=[_ge0, attrs.validators.le(8192)], metadata={"doc": "User tower width (0: no user tower)."}
    )
    interaction_hidden: list[int] = attrs.field(
        factory=lambda: [16], validator=_hidden_sizes,
        metadata={"doc": "Hidden sizes of the interaction MLP (Linear+ReLU each)."},
    )  # fmt: skip
    join: Literal["flatten", "last"] = attrs.field(
        default="flatten",
        metadata={"doc": "'flatten' (seed): user vector joined to every position, window flattened; "
                         "'last': last position's output joined with the user vector."},
    )
    embedding_dropout: float = attrs.field(default=0.1, validator=_dropout, metadata={"doc": "Dropout on embeddings."})
    attention_dropout: float = attrs.field(default=0.1, validator=_dropout, metadata={"doc": "Dropout on attention."})
    residual_dropout: float = attrs.field(default=0.1, validator=_dropout, metadata={"doc": "Dropout on residuals."})
    activation: Literal["gelu_tanh", "gelu"] = attrs.field(
        default="gelu_tanh",
        metadata={"doc": "The blocks' MLP activation: GPT-2's tanh approximation of GELU (the seed's), or the exact "
                         "GELU, which torch computes several times faster on the CPU."},
    )
    layer_norm_eps: float = attrs.field(default=1e-5, validator=attrs.validators.gt(0.0), metadata={"doc": "LayerNorm epsilon."})
    init_range: float = attrs.field(
        default=0.1, validator=attrs.validators.gt(0.0), metadata={"doc": "Uniform init range of embeddings and MLP."}
    )
    label_smoothing: float = attrs.field(default=0.0, validator=_dropout, metadata={"doc": "Cross-entropy label smoothing."})
    loss: Literal["softmax", "sampled_softmax", "gbce", "bce"] = attrs.field(
        default="softmax",
        metadata={"doc": "'softmax': cross-entropy over every item. 'sampled_softmax': over the target and "
                         "'negatives' shared negatives. 'gbce': generalised binary cross-entropy (gSASRec) over them. "
                         "'bce': SASRec's binary cross-entropy with one uniform negative per target."},
    )
    negatives: int = attrs.field(
        default=256, validator=[_ge1, attrs.validators.le(1_000_000)], metadata={"doc": "Negatives per batch (sampled losses)."}
    )
    negative_source: Literal["uniform", "in_batch"] = attrs.field(
        default="uniform",
        metadata={"doc": "Negatives drawn uniformly from the catalogue, or from the batch's targets (by popularity)."},
    )
    logq_correction: bool = attrs.field(
        default=True, metadata={"doc": "Subtract the log sampling probability from sampled logits (in-batch negatives)."}
    )
    gbce_t: float = attrs.field(
        default=0.75, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)],
        metadata={"doc": "gBCE calibration t (0: plain BCE, 1: fully calibrated)."},
    )
    rating_weighted_loss: bool = attrs.field(
        default=False, metadata={"doc": "Weight each target's loss by its rating (a weighted mean over the batch)."}
    )
    id_dropout: float = attrs.field(
        default=0.0, validator=_dropout,
        metadata={"doc": "Share of input items whose id embedding is zeroed in training (features remain)."},
    )
    output: Literal["mlp", "tied"] = attrs.field(
        default="mlp",
        metadata={"doc": "'mlp' (seed): bias-free Linear over the vocabulary. 'tied': dot product with the item "
                         "embeddings (the features are projected to embedding_dim)."},
    )
    user_ids: bool = attrs.field(default=True, metadata={"doc": "Give each user an id embedding in the user tower."})
    user_features: list[str] = attrs.field(
        factory=list,
        metadata={"doc": "User metadata columns embedded in the user tower: categorical ones, and numeric ones "
                         "with at most 1,000 distinct values (ML-1M: gender, age, occupation)."},
    )
    item_features: list[str] = attrs.field(
        factory=list,
        metadata={"doc": "Item metadata columns added to the item embeddings: multi-valued ones (genres) as a "
                         "projected multi-hot, categorical ones and whole numbers (year) as embeddings, other "
                         "numbers standardised and projected."},
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
    shifted_chunks: bool = attrs.field(
        default=False,
        metadata={"doc": "With objective = 'all_positions': move each user's chunk boundaries by a random amount "
                         "every epoch (same chunks, same cost), so a target is not always predicted after the same "
                         "short context at a chunk's start."},
    )

    def __attrs_post_init__(self) -> None:
        if self.objective == "all_positions" and self.join != "last":
            raise ValueError("'join' must be 'last' when objective = 'all_positions'")
        if self.shifted_chunks and self.objective != "all_positions":
            raise ValueError("'shifted_chunks' needs objective = 'all_positions'")
        if self.num_layers and self.embedding_dim % self.num_heads:
            raise ValueError(f"'num_heads' ({self.num_heads}) must divide 'embedding_dim' ({self.embedding_dim})")


class Transformer(Model):
    """GPT-style causal transformer over recent items, joined with a user embedding through an MLP."""

    options: TransformerOptions
    module: UserTowerTransformer
    _log_q: torch.Tensor | None = None  # log share of each item among training targets (set with the examples)

    def build(self, data: Interactions) -> UserTowerTransformer:
        o = self.options
        self.user_categories = user_categories(data, o.user_features) if o.user_features else {}
        self.user_kinds = {c: data.user_info.kinds[c] for c in o.user_features} if data.user_info is not None else {}
        return UserTowerTransformer(
            n_items=data.n_items, n_users=data.n_users, pad_token=data.pad_token, context=o.context_length,
            dim=o.embedding_dim, layers=o.num_layers, heads=o.num_heads, user_dim=o.user_embedding_dim,
            hidden=list(o.interaction_hidden), join=o.join, embedding_dropout=o.embedding_dropout,
            attention_dropout=o.attention_dropout, residual_dropout=o.residual_dropout, eps=o.layer_norm_eps,
            init_range=o.init_range, output=o.output, user_ids=o.user_ids,
            item_features=[item_feature(data, column) for column in o.item_features],
            user_features=user_codes(data, self.user_categories) if o.user_features else None, id_dropout=o.id_dropout,
            activation=o.activation,
        )  # fmt: skip

    def training_examples(self, train: TrainView) -> ExampleSource:
        self._log_q = _log_target_frequency(train, self.n_items).to(self.device)
        if self.device.type == "cpu":
            cpu_kernels.prepare()  # before the first step, not in it
        if self.options.objective == "all_positions":
            return SequenceChunks(train, self.options.context_length, shift=self.options.shifted_chunks)
        return WindowExamples(train.data, train.target_positions, self.options.context_length)

    def validation_examples(self, data: Interactions, cases: EvalCases) -> WindowExamples:
        return WindowExamples(data, cases.target_pos, self.options.context_length)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, items, skips_seen = batch["users"], batch["items"], self.options.loss_skips_seen
        if "mask" in batch:  # all positions: train only where the next item is a training target
            mask = batch["mask"]
            features = self.module.position_features(users, items)[mask]
            targets, ratings = batch["targets"][mask], batch["target_ratings"][mask]
        else:
            features, targets, ratings = self.module.features(users, items), batch["targets"], batch["target_ratings"]
            mask = torch.zeros_like(items, dtype=torch.bool)
            mask[:, -1] = True
        seen = _seen_before(items, mask, targets, self.n_items) if skips_seen else None
        o = self.options
        weights = ratings / ratings.sum().clamp(min=1e-6) if o.rating_weighted_loss else None
        if o.loss == "softmax" and o.label_smoothing == 0.0:
            return losses.full_softmax_mean(self.module.output_vectors, features, targets, weights, excluded=seen)
        per_target = self._loss_per_target(features, targets, seen)
        return (per_target * weights).sum() if weights is not None else per_target.mean()

    def _loss_per_target(self, features: torch.Tensor, targets: torch.Tensor,
                         seen: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:  # fmt: skip
        o, vectors = self.options, self.module.output_vectors
        if o.loss == "softmax":  # items already in the window cannot be the answer: they leave the softmax
            return losses.full_softmax(vectors, features, targets, label_smoothing=o.label_smoothing, excluded=seen)
        if o.loss == "bce":
            return losses.bce_one_negative(vectors, features, targets, self.n_items)
        negatives = losses.draw_negatives(targets, o.negatives, self.n_items, o.negative_source)
        log_q = self._log_q if o.negative_source == "in_batch" and o.logq_correction else None
        logits = losses.sampled_logits(vectors, features, targets, negatives, log_q)
        if o.loss == "gbce":
            return losses.gbce(logits, self.n_items, o.gbce_t)
        return losses.sampled_softmax(logits, o.label_smoothing)

    @torch.no_grad()
    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        return self._score(users, histories, None)

    @torch.no_grad()
    def score_new_users(self, features: pd.DataFrame, histories: torch.Tensor) -> torch.Tensor:
        """A user tower with ``user_features`` serves a brand-new user from those features (no id needed)."""
        if not self.options.user_features or self.module.users is None:
            return super().score_new_users(features, histories)
        missing = [c for c in self.options.user_features if c not in features]
        if missing:
            raise RecplugError(f"this model needs the user feature(s) {', '.join(missing)} for a new user")
        codes = [_category_codes(features[c], self.user_categories[c], c, self.user_kinds[c])
                 for c in self.options.user_features]  # fmt: skip
        users = torch.full((len(histories),), -1, dtype=torch.int64)
        return self._score(users, histories, torch.from_numpy(np.stack(codes, axis=1)))

    @torch.no_grad()
    def encode(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        return self._features(users, histories, None)

    @torch.no_grad()
    def decode(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.module.output(vectors.to(self.device)).float()

    def _score(self, users: torch.Tensor, histories: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor:
        scores = self.decode(self._features(users, histories, codes))
        return exclude(scores, histories) if self.options.skip_seen else scores

    def _features(self, users: torch.Tensor, histories: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor:
        """What the output scores: the interaction-MLP output ``[B, H]`` of the last ``context_length`` items."""
        length = self.options.context_length
        if self.options.join == "last":  # no wider than the longest history of the batch: same scores, less work
            length = min(length, max(int((histories != self.pad_token).sum(1).max()) if len(histories) else 1, 1))
        window = histories[:, -length:]
        if window.shape[1] < length:  # short histories: pad on the left
            window = F.pad(window, (length - window.shape[1], 0), value=self.pad_token)
        self.module.eval()
        codes = codes.to(self.device) if codes is not None else None
        return self.module.features(users.to(self.device), window.to(self.device), codes)


def _log_target_frequency(train: TrainView, n_items: int) -> torch.Tensor:
    """``[n_items]`` log share of each item among the training targets (unseen items: a tiny floor)."""
    counts = np.bincount(train.data.items[train.target_positions], minlength=n_items)[:n_items]
    return torch.from_numpy(np.log(np.maximum(counts, 0.5) / max(counts.sum(), 1))).float()


def _seen_before(items: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor,
                 n_items: int) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The items among ``items[b, :t + 1]`` for every trained position ``mask[b, t]``, as (row, item) pairs:
    ``row`` counts the trained positions in order (the rows of ``features[mask]``). A row's own target is left
    out. Pairs, not a ``[N, n_items]`` mask: a window of L items has at most L(L + 1)/2 of them."""
    length = items.shape[1]
    earlier = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()  # [t, s]: s <= t
    pairs = mask[:, :, None] & earlier & (items != n_items)[:, None, :]
    b, t, s = pairs.nonzero(as_tuple=True)
    rows = (mask.flatten().cumsum(0) - 1).view(mask.shape)[b, t]
    seen = items[b, s]
    keep = seen != targets[rows]
    return rows[keep], seen[keep]


def item_feature(data: Interactions, column: str) -> torch.Tensor:
    """One item metadata column as an :class:`~.modules.ItemEmbedding` input, a row per token (padding last).

    - multi-valued: ``[n_items + 1, values]`` multi-hot rows summing to 1 (the padding row is zero);
    - categorical: int64 codes from 1 (0: unknown or padding);
    - numeric, whole numbers within a range of 1,000 (years): int64 offsets from the smallest, from 1 (0: unknown);
    - other numeric: ``[n_items + 1, 1]`` standardised values (0: unknown).
    """
    info = data.item_info
    if info is None or column not in info.kinds:
        declared = ", ".join(f"{c} ({k})" for c, k in (info.kinds.items() if info is not None else [])) or "none"
        raise RecplugError(f"item_features: this dataset has no item metadata column {column!r} (declared: {declared})")
    kind, n = info.kinds[column], data.n_items
    if kind == "multi":
        hot = torch.from_numpy(info.multi_hot(column)[0].astype(np.float32))
        matrix = torch.zeros(n + 1, max(hot.shape[1], 1))
        matrix[:n, : hot.shape[1]] = hot / hot.sum(1, keepdim=True).clamp(min=1)
        return matrix
    if kind == "categorical":
        codes, _ = info.codes(column)
        return torch.from_numpy(np.concatenate([codes + 1, [0]]))
    if kind == "numeric":
        values = info.numbers(column)
        known = ~np.isnan(values)
        whole = known.any() and np.all(values[known] == np.round(values[known]))
        if whole and np.ptp(values[known]) <= 1000:
            index = np.zeros(n + 1, dtype=np.int64)
            index[:n][known] = (values[known] - values[known].min() + 1).astype(np.int64)
            return torch.from_numpy(index)
        scaled = np.zeros(n + 1, dtype=np.float32)
        if known.any():
            scaled[:n][known] = (values[known] - values[known].mean()) / (values[known].std() or 1.0)
        return torch.from_numpy(scaled[:, None])
    raise RecplugError(f"item_features: column {column!r} is {kind}; text columns are not modelled")


def user_categories(data: Interactions, columns: list[str]) -> dict[str, list[str]]:
    """The sorted values (as text) of each user feature: code ``i`` is value ``i``. Categorical columns, and
    numeric ones with at most ``MAX_NUMERIC_VALUES`` distinct values (an age, a household size), embed as
    categories; a numeric column with more values must be binned first (declared as a categorical band)."""
    info = data.user_info
    if info is None:
        raise RecplugError("user_features need user metadata, which this dataset lacks")
    declared = ", ".join(f"{c} ({k})" for c, k in info.kinds.items())
    wrong = [c for c in columns if info.kinds.get(c) not in ("categorical", "numeric")]
    if wrong:
        raise RecplugError(f"user_features must be categorical or numeric user metadata columns; not "
                           f"{', '.join(wrong)} (declared: {declared})")  # fmt: skip
    categories = {c: sorted(set(_category_text(info.frame[c], info.kinds[c]))) for c in columns}
    many = [c for c in columns if info.kinds[c] == "numeric" and len(categories[c]) > MAX_NUMERIC_VALUES]
    if many:
        raise RecplugError(f"user_features: the numeric column {many[0]!r} has {len(categories[many[0]])} distinct "
                           f"values (at most {MAX_NUMERIC_VALUES} embed as categories): declare a binned copy of "
                           "it as a categorical column")  # fmt: skip
    return categories


MAX_NUMERIC_VALUES = 1000


def _category_text(values: pd.Series, kind: str) -> pd.Series:
    """Values as category text; numbers in one form whatever their type (25, 25.0 and "25" are all "25")."""
    if kind != "numeric":
        return values.astype(str)
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    return pd.Series([str(int(v)) if np.isfinite(v) and v == int(v) else str(v) for v in numbers], index=values.index)


def user_codes(data: Interactions, categories: dict[str, list[str]]) -> torch.Tensor:
    """``[n_users, len(categories)]`` integer codes of the user features (see :func:`user_categories`)."""
    info = data.user_info
    if info is None:
        raise RecplugError("user_features need user metadata, which this dataset lacks")
    codes = [_category_codes(info.frame[c], values, c, info.kinds[c]) for c, values in categories.items()]
    return torch.from_numpy(np.stack(codes, axis=1))


def _category_codes(values: pd.Series, categories: list[str], name: str, kind: str) -> np.ndarray:
    text = _category_text(values, kind)
    codes = pd.Index(categories).get_indexer(text).astype(np.int64)
    if (codes < 0).any():
        unknown = sorted(set(text[codes < 0]))
        raise RecplugError(f"unknown {name} value(s) {', '.join(unknown)} (known: {', '.join(categories)})")
    return codes


@attrs.frozen
class SASRecOptions:
    """SASRec's hyper-parameters (Kang & McAuley, ICDM 2018; its ML-1M settings are the defaults)."""

    max_length: int = attrs.field(default=200, validator=_width, metadata={"doc": "Items of history the model sees."})
    hidden_units: int = attrs.field(default=50, validator=_width, metadata={"doc": "Embedding and block width."})
    num_blocks: int = attrs.field(default=2, validator=[_ge1, attrs.validators.le(128)], metadata={"doc": "Blocks."})
    num_heads: int = attrs.field(
        default=1, validator=[_ge1, attrs.validators.le(256)], metadata={"doc": "Heads (must divide hidden_units)."}
    )
    dropout: float = attrs.field(default=0.2, validator=_dropout, metadata={"doc": "Dropout everywhere."})
    loss: Literal["bce", "sampled_softmax", "softmax"] = attrs.field(
        default="bce",
        metadata={"doc": "'bce': the paper's, one uniform negative per target. 'sampled_softmax': cross-entropy "
                         "over 'negatives' shared uniform negatives. 'softmax': over every item."},
    )
    negatives: int = attrs.field(
        default=256, validator=[_ge1, attrs.validators.le(1_000_000)], metadata={"doc": "Negatives (sampled_softmax)."}
    )

    def __attrs_post_init__(self) -> None:
        if self.hidden_units % self.num_heads:
            raise ValueError(f"'num_heads' ({self.num_heads}) must divide 'hidden_units' ({self.hidden_units})")

    def transformer(self) -> TransformerOptions:
        """The transformer plugin's options that build this SASRec."""
        return TransformerOptions(
            context_length=self.max_length, embedding_dim=self.hidden_units, num_layers=self.num_blocks,
            num_heads=self.num_heads, user_embedding_dim=0, interaction_hidden=[], join="last", output="tied",
            objective="all_positions", embedding_dropout=self.dropout, attention_dropout=self.dropout,
            residual_dropout=self.dropout, loss=self.loss, negatives=self.negatives, negative_source="uniform",
            logq_correction=False, skip_seen=True,
        )  # fmt: skip


class SASRec(Transformer):
    """SASRec: causal self-attention over the history, every position trained, output tied to the item embeddings.

    Built from the shared transformer blocks (pre-LayerNorm; their feed-forward layer is 4x wide with GELU, where
    the paper's is 1x wide with ReLU)."""

    def __init__(self, options: SASRecOptions, training: TrainingOptions | None = None) -> None:
        super().__init__(options.transformer(), training)


@hookimpl
def register_components(register) -> None:
    register.model("transformer", Transformer, TransformerOptions)
    register.model("sasrec", SASRec, SASRecOptions)
    register.model("bert4rec", BERT4Rec, BERT4RecOptions)
    register.model("gru4rec", GRU4Rec, GRU4RecOptions)
