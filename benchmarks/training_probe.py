"""A training-throughput probe: one ``python -m recplug run`` of a short ML-1M training, its samples/s.

The benchmarks that compare throughput (``training_speed_vs_commit.py``, ``test_cpu_sharing.py``) start these
runs as separate processes, so that each has its own threads, allocator and imports (from this checkout or
another tree through ``PYTHONPATH``). Three configurations: the seed's (context 5, width 32, 4 blocks, user tower,
batch 512, one target per window), the leave-one-out one of ``examples/ml1m-loo-fast.toml`` (100-item
windows, every position a target, batch 64) and that one wide (``leave-one-out-wide``: width 128, context 200,
genre and year features, as in the hour-long runs of ``docs/results.rst``). Each trains one epoch of ``steps`` steps; the figure is the
samples/s of its epoch line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SEED = """
[experiment]
name = "speed-seed"
seed = 42
registry = "{registry}"
[dataset.movielens]
variant = "ml-1m"
[splits.seed_windows]
sequence_length = 5
[recommenders.transformer]
context_length = 5
embedding_dim = 32
num_layers = 4
num_heads = 4
user_embedding_dim = 32
interaction_hidden = [16]
training = {{ epochs = 1, batch_size = 512, lr = 0.001, max_steps_per_epoch = {steps}, validation_cases = 100 }}
[evaluation]
metrics = ["ndcg"]
ks = [10]
"""

LEAVE_ONE_OUT = """
[experiment]
name = "speed-loo"
seed = 42
registry = "{registry}"
[dataset.movielens]
variant = "ml-1m"
[splits.leave_one_out]
[recommenders.transformer]
objective = "all_positions"
join = "last"
context_length = 100
embedding_dim = 64
num_layers = 2
num_heads = 2
user_embedding_dim = 0
interaction_hidden = []
output = "tied"
embedding_dropout = 0.2
attention_dropout = 0.2
residual_dropout = 0.2
skip_seen = true
training = {{ epochs = 1, batch_size = 64, lr = 0.003, max_steps_per_epoch = {steps}, validation_cases = 100, monitor = "ndcg@10" }}
[evaluation]
metrics = ["ndcg"]
ks = [10]
"""

LEAVE_ONE_OUT_WIDE = LEAVE_ONE_OUT.replace('name = "speed-loo"', 'name = "speed-loo-wide"').replace(
    "context_length = 100", "context_length = 200"
).replace("embedding_dim = 64", 'embedding_dim = 128\nitem_features = ["genres", "year"]')

CONFIGS = {"seed": SEED, "leave-one-out": LEAVE_ONE_OUT, "leave-one-out-wide": LEAVE_ONE_OUT_WIDE}
EPOCH_LINE = re.compile(r"epoch 1/1\s+train loss.* (\d+) samples/s")


def start(config: str, steps: int, work: Path, tree: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:  # fmt: skip
    """A training run of ``config`` in its own process (imports from ``tree`` when given), under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    spec = work / f"{config}.toml"
    spec.write_text(CONFIGS[config].format(registry=work / "registry", steps=steps))
    environment = {**os.environ, **(env or {})}
    if tree is not None:
        environment["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "plugins")])
    return subprocess.Popen([sys.executable, "-m", "recplug", "run", str(spec), "--out", str(work / "run"),
                             "--overwrite"], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=work)  # fmt: skip


def finish(run: subprocess.Popen) -> float:
    """Wait for a run from :func:`start`; its epoch's samples/s (the run's log tail when it failed)."""
    _, log = run.communicate()
    found = EPOCH_LINE.search(log)
    if run.returncode != 0 or found is None:
        raise RuntimeError(f"the training run failed:\n{log[-3000:]}")
    return float(found.group(1))


def samples_per_second(config: str, steps: int, work: Path, tree: Path | None = None) -> float:
    """One run of ``config`` alone."""
    return finish(start(config, steps, work, tree))
