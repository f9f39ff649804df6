"""The torch modules of the transformer-with-a-user-tower model (GPT-2-style movie tower)."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from . import short_attention
from .dropout import Dropout, dropout
from .gelu import TanhGELU
from .short_attention import blocked_keys, short_window_attention


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (via scaled_dot_product_attention); causal unless
    built with ``causal=False`` (BERT4Rec), when only the mask limits what a position sees."""

    def __init__(self, dim: int, heads: int, attention_dropout: float, residual_dropout: float,
                 causal: bool = True) -> None:  # fmt: skip
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding_dim ({dim}) must be divisible by num_heads ({heads})")
        self.heads = heads
        self.causal = causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_dropout = attention_dropout
        self.residual_dropout = Dropout(residual_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, last_only: bool = False) -> torch.Tensor:
        """Attention output ``[B, L, D]``; with ``last_only``, for the last position alone ``[B, 1, D]`` (its
        query attends every earlier key, exactly as in the full pass)."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        if last_only:
            q, mask = q[:, :, -1:], mask[:, :, -1:] if mask is not None else None
        if self.training and self.attention_dropout > 0 and x.device.type == "cpu":
            y = _attention_with_dropout(q, k, v, mask, self.causal, self.attention_dropout)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.attention_dropout if self.training else 0.0,
                is_causal=self.causal and mask is None and not last_only,
            )  # fmt: skip
        return self.residual_dropout(self.proj(y.transpose(1, 2).reshape(batch, q.shape[2], dim)))

    def forward_sequence_first(self, x: torch.Tensor, blocked: torch.Tensor | None) -> torch.Tensor:
        """Attention output ``[L, B, D]`` of a short window ``x`` ``[L, B, D]`` on the CPU (see
        :mod:`.short_attention`); ``blocked`` from :func:`~.short_attention.blocked_keys`."""
        length, batch, dim = x.shape
        qkv = torch.addmm(self.qkv.bias[:, None], self.qkv.weight, x.view(-1, dim).t())  # [3D, L * B]
        p = self.attention_dropout if self.training else 0.0
        y = short_window_attention(qkv.view(3, self.heads, dim // self.heads, length, batch), blocked, p)
        y = torch.addmm(self.proj.bias, y.view(dim, -1).t(), self.proj.weight.t())
        return self.residual_dropout(y.view(length, batch, dim))


def _attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                            causal: bool, p: float) -> torch.Tensor:  # fmt: skip
    """What ``scaled_dot_product_attention`` computes on the CPU with dropout, with :func:`dropout`'s faster
    masks: softmax of the scaled scores over the keys a query may see, dropped out, times the values."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif causal:
        later = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(later, float("-inf"))
    return dropout(torch.softmax(scores, dim=-1), p, True) @ v


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)); x + mlp(ln(x)), MLP 4x wide with GELU (GPT-2's tanh
    approximation, or the exact one with ``activation="gelu"``)."""

    def __init__(self, dim: int, heads: int, attention_dropout: float, residual_dropout: float, eps: float,
                 causal: bool = True, activation: str = "gelu_tanh") -> None:  # fmt: skip
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=eps)
        self.attn = CausalSelfAttention(dim, heads, attention_dropout, residual_dropout, causal)
        self.ln2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim),
            TanhGELU() if activation == "gelu_tanh" else nn.GELU(),
            nn.Linear(4 * dim, dim),
            Dropout(residual_dropout),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, last_only: bool = False) -> torch.Tensor:
        x = (x[:, -1:] if last_only else x) + self.attn(self.ln1(x), mask, last_only)
        return x + self.mlp(self.ln2(x))

    def forward_sequence_first(self, x: torch.Tensor, blocked: torch.Tensor | None) -> torch.Tensor:
        """The block over a short window ``x`` ``[L, B, D]`` on the CPU (see :mod:`.short_attention`)."""
        x = x + self.attn.forward_sequence_first(self.ln1(x), blocked)
        return x + self.mlp(self.ln2(x))


class ItemEmbedding(nn.Module):
    """Item vectors: an id embedding plus one term per item feature.

    ``features`` holds one tensor per feature, a row per token: a float matrix ``[n_tokens, F]`` (multi-hot
    values, a standardised number) is projected by a bias-free Linear; an int64 index ``[n_tokens]`` (a
    category, a whole number such as a year) is looked up in an embedding.
    """

    def __init__(self, n_tokens: int, dim: int, features: list[torch.Tensor] = ()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.ids = nn.Embedding(n_tokens, dim)
        self.features = nn.ModuleList(
            nn.Embedding(int(f.max()) + 1, dim) if f.dtype == torch.int64 else nn.Linear(f.shape[1], dim, bias=False)
            for f in features
        )
        for i, values in enumerate(features):
            self.register_buffer(f"feature_{i}", values, persistent=False)

    def forward(self, tokens: torch.Tensor, id_dropout: float = 0.0) -> torch.Tensor:
        """Vectors of ``tokens``; ``id_dropout``: the share of tokens whose id part is zeroed (features remain)."""
        x = self.ids(tokens)
        if id_dropout > 0:
            x = x * (torch.rand(tokens.shape, device=tokens.device) >= id_dropout).unsqueeze(-1)
        for i, layer in enumerate(self.features):
            x = x + layer(getattr(self, f"feature_{i}")[tokens])
        return x


class MovieTower(nn.Module):
    """Token + learned position embeddings, dropout, N blocks (causal, or bidirectional with ``causal=False``),
    final LayerNorm (no LM head)."""

    def __init__(self, items: ItemEmbedding, context: int, dim: int, layers: int, heads: int,
                 embedding_dropout: float, attention_dropout: float, residual_dropout: float, eps: float,
                 pad_token: int, id_dropout: float = 0.0, causal: bool = True,
                 activation: str = "gelu_tanh") -> None:  # fmt: skip
        super().__init__()
        self.pad_token = pad_token
        self.causal = causal
        self.id_dropout = id_dropout
        self.tokens = items
        self.positions = nn.Embedding(context, dim)
        self.dropout = Dropout(embedding_dropout)
        self.blocks = nn.ModuleList(
            Block(dim, heads, attention_dropout, residual_dropout, eps, causal, activation) for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(dim, eps=eps)
        self.head_dim = dim // heads

    def forward(self, items: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Outputs ``[B, L, D]`` for windows ``[B, L]`` of the last ``L <= context`` positions: a window may drop
        left padding that no row needs, and positions stay counted from the right, so the outputs of the items
        are unchanged. ``last_only``: the last position's output ``[B, 1, D]``, with the last block computed for
        it alone (inference). On the CPU, short windows with narrow heads run sequence-first (see
        :mod:`.short_attention`): the same outputs."""
        length = items.shape[1]
        context = self.positions.num_embeddings
        positions = self.positions(torch.arange(context - length, context, device=items.device))
        id_dropout = self.id_dropout if self.training else 0.0
        is_pad = items == self.pad_token
        mask = _causal_padding_mask(is_pad) if self.causal else _padding_mask(is_pad)
        if self.blocks and short_attention.serves(length, self.head_dim, items.device) and not last_only:
            x = self.dropout(self.tokens(items.t(), id_dropout) + positions[:, None])  # [L, B, D]
            blocked = blocked_keys(mask, self.causal, length, items.device)
            for block in self.blocks:
                x = cast(Block, block).forward_sequence_first(x, blocked)
            return self.ln_f(x).transpose(0, 1)
        x = self.dropout(self.tokens(items, id_dropout) + positions)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only and i == len(self.blocks) - 1)
        return self.ln_f(x)


class MaskedItemModel(nn.Module):
    """BERT4Rec's network: item and position embeddings, bidirectional blocks, output tied to the item embeddings.

    Tokens: items ``0..n_items-1``, padding ``n_items``, the mask ``n_items + 1`` (the item to predict)."""

    def __init__(self, n_items: int, context: int, dim: int, layers: int, heads: int, dropout: float,
                 eps: float) -> None:  # fmt: skip
        super().__init__()
        self.n_items = n_items
        self.items = ItemEmbedding(n_items + 2, dim)
        self.tower = MovieTower(self.items, context, dim, layers, heads, dropout, dropout, dropout, eps,
                                pad_token=n_items, causal=False)  # fmt: skip
        self.output_bias = nn.Parameter(torch.zeros(n_items))
        for module in self.modules():  # BERT's initialisation
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def mask_token(self) -> int:
        return self.n_items + 1

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores ``[..., n_items]`` of outputs ``[..., D]``: dot product with the item embeddings, plus a bias."""
        return hidden @ self.items.ids.weight[: self.n_items].T + self.output_bias


class UserEmbedding(nn.Module):
    """User vectors: an id embedding and/or embeddings of categorical features (gender, age, occupation).

    A user token of -1 (a user never seen in training) has no id vector: the zero vector, or, when the
    caller passes that user's feature ``codes``, the sum of the feature embeddings alone.
    """

    def __init__(self, n_users: int, dim: int, use_ids: bool, features: torch.Tensor | None) -> None:
        super().__init__()
        self.ids = nn.Embedding(n_users, dim) if use_ids else None
        cardinalities = (features.max(0).values + 1).tolist() if features is not None else []
        self.features = nn.ModuleList(nn.Embedding(int(c), dim) for c in cardinalities)
        self.feature_codes: torch.Tensor | None
        self.register_buffer("feature_codes", features, persistent=False)

    def forward(self, users: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors ``[B, dim]`` of user tokens ``[B]``; ``codes`` ``[B, n_features]`` replace stored features."""
        known = (users >= 0)[:, None]
        safe = users.clamp(min=0)
        parts = [self.ids(safe) * known] if self.ids is not None else []
        if self.features:
            given = codes is not None
            if codes is None:
                assert self.feature_codes is not None  # a tower with features stores every user's codes
                codes = self.feature_codes[safe]
            features = torch.stack([table(codes[:, i]) for i, table in enumerate(self.features)]).sum(0)
            parts.append(features if given else features * known)
        return torch.stack(parts).sum(0)


def _padding_mask(is_pad: torch.Tensor) -> torch.Tensor | None:
    """Boolean ``[B, 1, L, L]`` mask: attend to every non-padding key (and always to oneself)."""
    if not bool(is_pad.any()):
        return None
    eye = torch.eye(is_pad.shape[1], dtype=torch.bool, device=is_pad.device)
    return ~is_pad[:, None, None, :] | eye


def _causal_padding_mask(is_pad: torch.Tensor) -> torch.Tensor | None:
    """Boolean ``[B, 1, L, L]`` mask: attend to earlier non-padding keys (and always to oneself)."""
    if not bool(is_pad.any()):
        return None
    length = is_pad.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=is_pad.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=is_pad.device)
    return (causal & ~is_pad[:, None, None, :]) | eye


class UserTowerTransformer(nn.Module):
    """Movie tower + user tower, joined through an interaction MLP into item logits.

    ``output='mlp'`` (the seed's): a bias-free Linear over the item vocabulary. ``output='tied'``: the
    features are projected to the item-embedding width and scored by dot product with the item vectors.
    """

    def __init__(self, *, n_items: int, n_users: int, pad_token: int, context: int, dim: int, layers: int,
                 heads: int, user_dim: int, hidden: list[int], join: str, embedding_dropout: float,
                 attention_dropout: float, residual_dropout: float, eps: float, init_range: float,
                 output: str = "mlp", user_ids: bool = True, item_features: list[torch.Tensor] = (),  # type: ignore[assignment]
                 user_features: torch.Tensor | None = None,
                 id_dropout: float = 0.0, activation: str = "gelu_tanh") -> None:  # fmt: skip
        super().__init__()
        self.join = join
        self.n_items = n_items
        self.item_embedding = ItemEmbedding(n_items + 1, dim, item_features)
        self.movies = MovieTower(self.item_embedding, context, dim, layers, heads, embedding_dropout,
                                 attention_dropout, residual_dropout, eps, pad_token, id_dropout,
                                 activation=activation)  # fmt: skip
        has_user = user_dim > 0 and (user_ids or user_features is not None)
        self.users = UserEmbedding(n_users, user_dim, user_ids, user_features) if has_user else None
        width = (dim + (user_dim if has_user else 0)) * (context if join == "flatten" else 1)
        layers_: list[nn.Module] = []
        for size in hidden:
            layers_ += [nn.Linear(width, size), nn.ReLU()]
            width = size
        if output == "tied" and width != dim:
            layers_.append(nn.Linear(width, dim))
        self.interaction = nn.Sequential(*layers_)
        self.tied = output == "tied"
        self.output_layer = None if self.tied else nn.Linear(width, n_items, bias=False)
        self._init(init_range)

    def _init(self, init_range: float) -> None:
        for name, module in self.named_modules():
            if isinstance(module, nn.Embedding):
                nn.init.uniform_(module.weight, -init_range, init_range)
            elif isinstance(module, nn.Linear):
                if name.startswith("movies.blocks"):
                    nn.init.normal_(module.weight, std=0.02)
                else:
                    nn.init.uniform_(module.weight, -init_range, init_range)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def output_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Output vectors ``[S, H]`` of ``items`` (default: every item): an item's logit is feature . vector."""
        if self.tied:
            device = self.item_embedding.ids.weight.device
            return self.item_embedding(torch.arange(self.n_items, device=device) if items is None else items)
        assert self.output_layer is not None  # not tied: the output layer holds the vectors
        return self.output_layer.weight if items is None else self.output_layer.weight[items]

    def output(self, features: torch.Tensor) -> torch.Tensor:
        """Logits over the item vocabulary for features ``[..., H]``."""
        return features @ self.output_vectors().T

    def forward(self, users: torch.Tensor, items: torch.Tensor, user_codes: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, n_items]`` for the item after each window ``items`` ``[B, context]``."""
        return self.output(self.features(users, items, user_codes))

    def features(self, users: torch.Tensor, items: torch.Tensor, user_codes: torch.Tensor | None = None) -> torch.Tensor:
        """Interaction-MLP output ``[B, H]`` that scores the item after each window."""
        if self.join == "last" and not self.training:  # inference: the last position alone, same values
            return self.interaction(self.with_user(self.movies(items, last_only=True), users, user_codes))[:, -1]
        if self.join == "last":
            return self.position_features(users, items, user_codes)[:, -1]
        x = self.with_user(self.movies(items), users, user_codes)  # [B, L, D + U]
        return self.interaction(x.flatten(1))

    def position_features(self, users: torch.Tensor, items: torch.Tensor,
                          user_codes: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Interaction-MLP output at every position ``[B, L, H]`` (join 'last'; for all-position training)."""
        return self.interaction(self.with_user(self.movies(items), users, user_codes))

    def with_user(self, x: torch.Tensor, users: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Join the user vector to every position of ``x`` ``[B, L, D]`` (``codes``: a new user's features)."""
        if self.users is None:
            return x
        u = self.users(users, codes)
        return torch.cat([x, u[:, None, :].expand(-1, x.shape[1], -1)], dim=-1)
