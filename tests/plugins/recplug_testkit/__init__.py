"""Tiny deterministic components for recplug's core tests: a dataset, a splitter, a model, a baseline, a metric.

They stand in for the bundled MovieLens and transformer plugins, so that tests of the runner, training loop,
registry and command line exercise only recplug's core (run them with ``RECPLUG_PLUGINS=testkit``). Like any
plugin, this one imports only :mod:`recplug.api`.

- ``toy`` (dataset): users walk through the catalogue in steps of their own size, with seeded noise, so the
  next item is learnable; items and users carry metadata of every declared kind.
- ``holdout`` (splitter): per user, the last item is the test case, the one before it validation.
- ``bigram`` (model): a factorised Markov chain (last item -> embedding -> logits over items), trained by the
  Trainer with a validation loss.
- ``counts`` (baseline): training interaction counts.
- ``hits`` (metric): the share of cases whose target is in the top k.
"""

from __future__ import annotations

import hashlib

import attrs
import numpy as np
import pandas as pd
import torch

from recplug.api import (
    Baseline,
    Dataset,
    EvalCases,
    ExampleSource,
    FeatureTable,
    Interactions,
    Metric,
    Model,
    RankedLists,
    RunContext,
    Split,
    Splitter,
    TrainView,
    WindowExamples,
    build_interactions,
    hookimpl,
)

RECPLUG_PLUGIN_API = 1


@attrs.frozen
class ToyOptions:
    users: int = attrs.field(default=30, validator=attrs.validators.ge(1), metadata={"doc": "Number of users."})
    items: int = attrs.field(default=25, validator=attrs.validators.ge(2), metadata={"doc": "Number of items."})
    length: int = attrs.field(default=12, validator=attrs.validators.ge(3), metadata={"doc": "Longest sequence."})
    noise: float = attrs.field(default=0.2, metadata={"doc": "Share of steps replaced by a random item."})
    seed: int = attrs.field(default=0, metadata={"doc": "Seeds the generator."})


class Toy(Dataset):
    """Generated walks through a small catalogue, with item and user metadata."""

    options: ToyOptions

    def load(self, context: RunContext) -> Interactions:
        o = self.options
        rng = np.random.default_rng(o.seed)
        lengths = rng.integers(3, o.length + 1, size=o.users)
        users = np.repeat(np.arange(o.users), lengths)
        step = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        stride = 1 + users % 3
        items = (users * 7 + step * stride) % o.items
        noisy = rng.random(len(items)) < o.noise
        items[noisy] = rng.integers(0, o.items, size=int(noisy.sum()))
        ids = np.arange(o.items) * 10 + 5  # raw item ids differ from tokens
        item_info = FeatureTable(
            pd.DataFrame({
                "title": [f"Item {i}" for i in ids],
                "tags": [["even" if i % 2 == 0 else "odd", "low" if i < o.items // 2 else "high"] for i in range(o.items)],
                "color": [["red", "green", "blue"][i % 3] for i in range(o.items)],
                "year": [1990 + i % 7 for i in range(o.items)],
            }, index=pd.Index(ids, name="item_id")),
            {"title": "text", "tags": "multi", "color": "categorical", "year": "numeric"},
        )  # fmt: skip
        user_info = FeatureTable(
            pd.DataFrame({"group": [["a", "b"][u % 2] for u in range(o.users)]}, index=pd.Index(np.arange(o.users) + 1)),
            {"group": "categorical"},
        )
        fingerprint = hashlib.sha256(repr(attrs.asdict(o)).encode()).hexdigest()
        return build_interactions(
            users + 1, ids[items], np.ones(len(items)), step, fingerprint=fingerprint,
            user_ids=np.arange(o.users) + 1, item_ids=ids, item_info=item_info, user_info=user_info,
            source={"dataset": "toy", **attrs.asdict(o)},
        )  # fmt: skip


class Holdout(Splitter):
    """Per user by time: the last item is the test case, the one before it validation, the rest training."""

    def split(self, data: Interactions, context: RunContext) -> Split:
        starts, ends = data.offsets[:-1], data.offsets[1:]
        position = np.arange(data.n_interactions)
        visible = position < np.repeat(ends - 2, data.lengths)
        first = np.zeros(data.n_interactions, dtype=bool)
        first[starts] = True
        users = np.arange(data.n_users, dtype=np.int64)
        return Split(
            "holdout",
            TrainView(data, visible=visible, is_target=visible & ~first),
            EvalCases(users, starts.copy(), ends - 2),
            EvalCases(users, starts.copy(), ends - 1),
            {"splitter": "holdout", "history": "all earlier interactions", "seen_items": "all earlier interactions"},
        )


@attrs.frozen
class BigramOptions:
    dim: int = attrs.field(
        default=8, validator=[attrs.validators.ge(1), attrs.validators.le(4096)], metadata={"doc": "Embedding width."}
    )


class BigramModule(torch.nn.Module):
    def __init__(self, n_items: int, dim: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(n_items + 1, dim)
        self.output = torch.nn.Linear(dim, n_items)

    def forward(self, last: torch.Tensor) -> torch.Tensor:
        return self.output(self.embedding(last))


class Bigram(Model):
    """The next item from the last one: a factorised Markov chain."""

    options: BigramOptions
    module: BigramModule

    def build(self, data: Interactions) -> BigramModule:
        return BigramModule(data.n_items, self.options.dim)

    def training_examples(self, train: TrainView) -> ExampleSource:
        return WindowExamples(train.data, train.target_positions, 1)

    def validation_examples(self, data: Interactions, cases: EvalCases) -> ExampleSource:
        return WindowExamples(data, cases.target_pos, 1)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self.module(batch["items"][:, -1]), batch["targets"])

    @torch.no_grad()
    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        self.module.eval()
        return self.module(histories[:, -1].to(self.device)).float()


class Counts(Baseline):
    """Items by their number of training interactions."""

    def fit(self, train: TrainView, validation: EvalCases, context: RunContext) -> None:
        data = train.data
        self.n_items, self.pad_token = data.n_items, data.pad_token
        self.counts = torch.from_numpy(np.bincount(data.items[train.visible], minlength=data.n_items)).float()

    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(len(users), -1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def load_state_dict(self, state: dict[str, torch.Tensor], data: Interactions) -> None:
        self.n_items, self.pad_token, self.counts = data.n_items, data.pad_token, state["counts"]


class Hits(Metric):
    """Share of cases whose target is in the top k."""

    def compute(self, ranked: RankedLists, k: int) -> float:
        return ranked.hits(k).mean().item()


@hookimpl
def register_components(register) -> None:
    register.dataset("toy", Toy, ToyOptions)
    register.splitter("holdout", Holdout)
    register.model("bigram", Bigram, BigramOptions)
    register.baseline("counts", Counts)
    register.metric("hits", Hits)
