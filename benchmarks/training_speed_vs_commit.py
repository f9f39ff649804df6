"""Training throughput of this checkout against another commit, side by side in one run.

    RECPLUG_DATA_DIR=../shared/data python benchmarks/training_speed_vs_commit.py --base REV [--steps 60] [--rounds 3]

The other commit is checked out in a temporary git worktree; each measurement is a fresh ``python -m recplug run``
whose imports come from one tree or the other (``PYTHONPATH``), alternating between the trees round by round so
that both see the same machine. The configurations of ``training_probe.py`` (the seed's
and the leave-one-out one by default; ``--configs`` adds ``leave-one-out-wide``), each run one epoch of ``--steps`` steps; printed: every run, the median per tree and
configuration, their ratio, and the median of each round's ratio (the two runs of a round are
back to back: a machine whose speed drifts between runs moves both).
Run it with nothing else heavy on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from training_probe import samples_per_second

REPO = Path(__file__).resolve().parents[1]


def worktree(rev: str, where: Path) -> Path:
    """``rev`` checked out (detached) under ``where``."""
    path = where / "base"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(path), rev], check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare against (e.g. the one before a change)")
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per tree and configuration")
    parser.add_argument("--configs", default="seed,leave-one-out", help="which configurations, comma-separated")
    args = parser.parse_args()
    configs = args.configs.split(",")
    with tempfile.TemporaryDirectory(prefix="recplug-speed-") as tmp:
        base = worktree(args.base, Path(tmp))
        trees = {"base": base, "this": REPO}
        rates: dict[tuple[str, str], list[float]] = {(t, c): [] for t in trees for c in configs}
        try:
            for round_ in range(args.rounds):
                order = list(trees.items()) if round_ % 2 == 0 else list(trees.items())[::-1]
                for config in configs:
                    for name, tree in order:
                        rate = samples_per_second(config, args.steps, Path(tmp) / name, tree)
                        rates[name, config].append(rate)
                        print(f"round {round_ + 1}  {config:<18} {name:<5} {rate:8.0f} samples/s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    print(f"\nmedians (base {args.base}, this {rev.strip()}{' + changes' if _dirty() else ''}):")
    for config in configs:
        before, after = statistics.median(rates["base", config]), statistics.median(rates["this", config])
        paired = statistics.median(a / b for a, b in zip(rates["this", config], rates["base", config], strict=True))
        print(f"  {config:<18} {before:8.0f} -> {after:8.0f} samples/s  ({after / before:.2f}x; "
              f"median of the rounds' ratios {paired:.2f}x)")


def _dirty() -> bool:
    return bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip())  # fmt: skip


if __name__ == "__main__":
    main()
