"""Synthetic MovieLens-style data at any size, for scaling tests and benchmarks.

Items have Zipf-like popularity; each user drifts through a latent "taste" so that
sequences have learnable order. Generation is vectorised: 25M interactions take seconds.
"""

from __future__ import annotations

import hashlib

import attrs
import numpy as np
import pandas as pd

from recplug.api import Dataset, FeatureTable, Interactions, RunContext, build_interactions, hookimpl


@attrs.frozen
class SyntheticOptions:
    interactions: int = attrs.field(default=1_000_000, validator=attrs.validators.ge(1), metadata={"doc": "Rows."})
    users: int = attrs.field(default=6_000, validator=attrs.validators.ge(1), metadata={"doc": "Number of users."})
    items: int = attrs.field(default=3_700, validator=attrs.validators.ge(2), metadata={"doc": "Number of items."})
    zipf: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0), metadata={"doc": "Popularity skew."})
    seed: int = attrs.field(default=0, metadata={"doc": "Generator seed (independent of the experiment seed)."})


class Synthetic(Dataset):
    """Generated MovieLens-like ratings with popularity skew and sequential structure."""

    options: SyntheticOptions

    def load(self, context: RunContext) -> Interactions:
        o = self.options
        rng = np.random.default_rng(o.seed)
        # Users' activity is skewed too; every user has at least one interaction.
        activity = rng.pareto(1.5, size=o.users) + 1.0
        counts = 1 + rng.multinomial(max(o.interactions - o.users, 0), activity / activity.sum())
        users = np.repeat(np.arange(o.users, dtype=np.int64), counts)[: o.interactions]
        # Each interaction: a popular item shifted by the user's drifting taste (a random walk over item ids).
        popularity = 1.0 / np.arange(1, o.items + 1) ** o.zipf
        base = rng.choice(o.items, size=len(users), p=popularity / popularity.sum())
        drift = np.cumsum(rng.integers(-3, 4, size=len(users)))
        start = np.repeat(rng.integers(0, o.items, size=o.users), counts)[: len(users)]
        items = (base + start + drift) % o.items
        timestamps = 1_000_000_000 + np.arange(len(users), dtype=np.int64)
        ratings = rng.integers(1, 6, size=len(users)).astype(np.float32)
        fingerprint = hashlib.sha256(repr(attrs.asdict(o)).encode()).hexdigest()
        info = FeatureTable(pd.DataFrame(
            {"title": [f"Item {i}" for i in range(o.items)], "genres": [["Drama"]] * o.items, "year": 2000},
            index=pd.Index(np.arange(o.items), name="item_id"),
        ), {"title": "text", "genres": "multi", "year": "numeric"})  # fmt: skip
        return build_interactions(
            users, items, ratings, timestamps, fingerprint=fingerprint,
            user_ids=np.arange(o.users), item_ids=np.arange(o.items), item_info=info,
            source={"dataset": "synthetic", **attrs.asdict(o)},
        )  # fmt: skip


@hookimpl
def register_components(register) -> None:
    register.dataset("synthetic", Synthetic, SyntheticOptions)
