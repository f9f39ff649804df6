"""Test helpers: small generated MovieLens data in the real file formats, and running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from recplug._toml import dumps

REPO = Path(__file__).resolve().parents[1]


GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Romance"]


def write_ml1m(folder: Path, n_users: int = 60, n_movies: int = 50, seed: int = 0, per_user: tuple[int, int] = (8, 30)) -> Path:
    """Write users.dat, movies.dat and ratings.dat in the ML-1M format; return the folder.

    Movie ids are sparse (listed ids 1, 3, 5, ...) and a few listed movies are never rated;
    timestamps tie within users now and then, as in the real data.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    movie_ids = np.arange(1, 2 * n_movies, 2)
    with (folder / "movies.dat").open("w", encoding="latin-1") as f:
        for i, mid in enumerate(movie_ids):
            genres = "|".join(sorted(set(rng.choice(GENRES, size=rng.integers(1, 3)))))
            f.write(f"{mid}::Movie {mid}: Caf\xe9 ({1950 + i % 50})::{genres}\n")
    with (folder / "users.dat").open("w", encoding="latin-1") as f:
        for uid in range(1, n_users + 1):
            f.write(f"{uid}::{'MF'[uid % 2]}::{[1, 18, 25, 35][uid % 4]}::{uid % 21}::{10000 + uid}\n")
    popularity = np.linspace(2.0, 0.2, n_movies - 3)  # the last three movies are never rated
    popularity /= popularity.sum()
    lines = []
    for uid in range(1, n_users + 1):
        count = int(rng.integers(*per_user))
        chosen = rng.choice(n_movies - 3, size=count, replace=False, p=popularity)
        times = 978_300_000 + np.sort(rng.integers(0, 5_000, size=count)) // 7 * 7  # ties
        for movie, t in zip(chosen, times):
            lines.append(f"{uid}::{movie_ids[movie]}::{int(rng.integers(1, 6))}::{t}\n")
    order = rng.permutation(len(lines))  # file order is not time order
    (folder / "ratings.dat").write_text("".join(lines[i] for i in order))
    return folder


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m recplug ARGS`` in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONWARNINGS": "default", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "recplug", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd or REPO, timeout=timeout,
    )  # fmt: skip


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def tiny_transformer_spec(path: Path, data_dir: Path, name: str, registry: Path | None = None,
                          model: str = "", training: str = "epochs = 1\nbatch_size = 64", evaluation: str = "") -> Path:  # fmt: skip
    """A spec file that trains a small transformer on ``data_dir`` (extra TOML lines per section)."""
    registry_line = f'registry = "{registry}"' if registry else ""
    return write_spec(path, f"""
[experiment]
name = "{name}"
{registry_line}
[dataset.movielens]
data_dir = "{data_dir}"
[recommenders.transformer]
embedding_dim = 16
num_layers = 1
num_heads = 2
{model}
[recommenders.transformer.training]
{training}
[evaluation]
{evaluation}
""")


def one_model_spec(path: Path, data_dir: Path, name: str, label: str, options: str, training: str,
                   registry: Path) -> Path:  # fmt: skip
    """A spec file that trains one model, ``[recommenders.<label>]`` with ``options`` lines, on ``data_dir``."""
    return write_spec(path, f"""
[experiment]
name = "{name}"
registry = "{registry}"
[dataset.movielens]
data_dir = "{data_dir}"
[recommenders.{label}]
{options}
[recommenders.{label}.training]
{training}
""")


TESTKIT_ENV = {"RECPLUG_PLUGINS": "testkit"}
"""Core tests run the command line with the test kit's plugins only (no MovieLens, no transformer)."""


def toy_spec(name: str = "toy", seed: int = 5, registry: Path | None = None, *, model: dict | None = None,
             training: dict | None = None, baseline: bool = True, toy: dict | None = None) -> dict:  # fmt: skip
    """A spec over the test kit: the toy dataset, the holdout split, the bigram model (and the counts baseline)."""
    recommenders: dict = {"counts": {}} if baseline else {}
    recommenders["bigram"] = {**(model or {}), "training": {"epochs": 3, "batch_size": 16, "lr": 0.05, **(training or {})}}
    experiment = {"name": name, "seed": seed, "device": "cpu", **({"registry": str(registry)} if registry else {})}
    return {"experiment": experiment, "dataset": {"toy": toy or {}}, "splits": {"holdout": {}},
            "recommenders": recommenders, "evaluation": {"metrics": ["hits"], "ks": [1, 5]}}  # fmt: skip


def to_toml(data: dict) -> str:
    """A spec dict as TOML."""
    return dumps(data)


def train_register_and_reload(tmp_path: Path, label: str, options: str, training: str) -> tuple[Any, Any]:
    """Train ``[recommenders.<label>]`` on small ML-1M-format data, register it as ``m-<label>``, load it back:
    (the run's result, the served model). The recommender has a training history and an NDCG row."""
    from recplug._model_registry import ModelRegistry
    from recplug._plugin_manager import get_plugin_manager
    from recplug._runner import run_experiment
    from recplug._spec import load_spec

    data = write_ml1m(tmp_path / "data", n_users=40, n_movies=40)
    spec = one_model_spec(tmp_path / "s.toml", data, "m", label, options, training, tmp_path / "registry")
    plugins = get_plugin_manager()
    result = run_experiment(load_spec(spec, plugins), plugins, run_dir=tmp_path / "run")
    assert result.fitted[0].recommender.history and {r["metric"] for r in result.results["rows"]} >= {"ndcg"}
    return result, ModelRegistry(tmp_path / "registry").load(f"m-{label}")


def check_served_like_fitted(fitted: Any, served: Any) -> None:
    """A registered model, loaded back, scores a history as the fitted one did and serves it as a new user."""
    import torch

    histories, users = torch.tensor([[1, 2, 3]]), torch.tensor([0])
    assert torch.allclose(served.recommender.score(users, histories), fitted.score(users, histories), atol=1e-5)
    raw = served.vocab.item_ids[[1, 2, 3]].tolist()
    recommended = [r["item_id"] for r in served.recommend(history=raw, k=5)]
    assert len(recommended) == 5 and not set(recommended) & set(raw)
