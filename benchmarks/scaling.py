"""Scaling table: load, split, one training epoch and evaluation at 1M, 5M and 25M synthetic interactions.

    python benchmarks/scaling.py 1000000 5000000 25000000:0.1

Each size may carry ``:FRACTION``: the epoch is then timed on that fraction of its steps and scaled up (marked
"est."). The catalogue stays at 3,700 items (as in ML-1M) while users grow with the data, so the cost of an epoch
should grow linearly with the interactions. Prints a markdown table for docs/results.rst.
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import torch

from recplug._components import RunContext
from recplug._evaluation import EvaluationOptions, evaluate, resolve_metrics
from recplug._plugin_manager import get_plugin_manager
from recplug._training import TrainingOptions
from recplug_splits import LeaveOneOut, LeaveOneOutOptions
from recplug_synthetic import Synthetic, SyntheticOptions
from recplug_transformer import Transformer, TransformerOptions

MODEL = TransformerOptions(objective="all_positions", join="last", context_length=50, embedding_dim=32, num_layers=1,
                           num_heads=2, user_embedding_dim=16, interaction_hidden=[32], output="tied")  # fmt: skip


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(n: int, fraction: float = 1.0) -> dict[str, float]:
    users, items = max(6_000, n // 165), 3_700
    row: dict[str, float] = {"interactions": n, "users": users, "items": items}
    t = time.perf_counter()
    data = Synthetic(SyntheticOptions(interactions=n, users=users, items=items)).load(RunContext())
    row["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    split = LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())
    row["split_s"] = time.perf_counter() - t
    model = Transformer(MODEL, TrainingOptions(epochs=1, batch_size=64, validation_cases=1))
    model.prepare(data)
    examples = model.training_examples(split.train)
    optimizer = torch.optim.Adam(model.module.parameters(), lr=1e-3)
    t = time.perf_counter()
    order = np.random.default_rng(0).permutation(len(examples))
    for lo in range(0, int(len(order) * fraction), 64):
        optimizer.zero_grad()
        model.loss(examples.batch(order[lo : lo + 64])).backward()
        optimizer.step()
    row["epoch_s"] = (time.perf_counter() - t) / fraction
    t = time.perf_counter()
    metrics = resolve_metrics(["ndcg", "hit_rate"], get_plugin_manager())
    evaluate(model, data, split.test, metrics, EvaluationOptions(ks=[10], batch_size=1024))
    row["evaluate_s"] = time.perf_counter() - t
    row["peak_rss_gib"] = peak_gib()
    return row


if __name__ == "__main__":
    sizes = [(int(x.split(":")[0]), float(x.split(":")[1]) if ":" in x else 1.0) for x in sys.argv[1:]]
    sizes = sizes or [(1_000_000, 1.0), (5_000_000, 1.0), (25_000_000, 0.1)]
    print("| interactions | users | items | load s | split s | 1 epoch s | evaluate s | peak RSS GiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, fraction in sizes:
        r = measure(n, fraction)
        epoch = f"{r['epoch_s']:.0f}" + (f" (est. from {fraction:.0%})" if fraction < 1 else "")
        print(f"| {n:,} | {r['users']:,} | {r['items']:,} | {r['load_s']:.1f} | {r['split_s']:.1f} | {epoch} | "
              f"{r['evaluate_s']:.1f} | {r['peak_rss_gib']:.2f} |", flush=True)  # fmt: skip
