"""recplug's SASRec beside RecTools' SASRec: the same leave-one-out data, architecture and wall-clock budget.

    RECPLUG_DATA_DIR=../shared/data python benchmarks/peers/sasrec_vs_rectools.py --minutes 10

1. RecTools is installed into its own virtual environment (``--venv``, default ``benchmarks/peers/.venv-rectools``):
   torch (the version recplug runs on) and ``rectools[torch]``.
2. recplug loads raw ML-1M, makes its leave-one-out split and exports it: ``train.csv`` (what a model may learn
   from: every user's interactions but the last two) and ``history.csv`` (all but the last: the test histories).
3. recplug trains its ``sasrec`` (``recplug run`` on a generated spec, ``training.max_minutes`` = the budget; the
   best epoch by validation NDCG@10) and evaluates it on the test cases.
4. RecTools trains its ``SASRecModel`` on ``train.csv`` in its own environment for the same budget (Lightning's
   ``max_time``) and recommends each user's top 100 from ``history.csv``, seen items filtered.
5. recplug's evaluator scores the peer's lists (its ``ndcg`` and ``hit_rate`` metric plugins on the ranks of the
   test targets); the two rows, their wall times and a paired t-test are printed and written to
   ``WORK/comparison.json``.

Both run on the same CPU one after the other, with torch's default thread count; the architecture is SASRec's
ML-1M size (200 items, width 50, 2 blocks, 1 head, dropout 0.2), full-softmax cross-entropy, Adam lr 1e-3,
batch 128.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recplug._components import RunContext
from recplug._metric import RankedLists
from recplug._plugin_manager import get_plugin_manager
from recplug._statistics import paired_p_values
from recplug_movielens import MovieLens, MovieLensOptions
from recplug_splits import LeaveOneOut, LeaveOneOutOptions

HERE = Path(__file__).resolve().parent
PEER = ["rectools[torch]==0.19.0"]
CONFIG = {"max_length": 200, "width": 50, "blocks": 2, "heads": 1, "dropout": 0.2, "loss": "softmax", "lr": 1e-3,
          "batch_size": 128, "max_epochs": 200, "seed": 42}  # fmt: skip


def peer_python(venv_dir: Path) -> Path:
    """The peer environment's interpreter, created and filled on first use."""
    python = venv_dir / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import rectools"], capture_output=True).returncode == 0:
        return python
    print(f"installing {', '.join(PEER)} into {venv_dir} ...", flush=True)
    venv.create(venv_dir, with_pip=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"torch=={torch.__version__.split('+')[0]}"], check=True)
    subprocess.run([*pip, *PEER], check=True)
    return python


def export_split(data_dir: Path, work: Path):
    """Write train.csv and history.csv (raw ids, ``order`` = position in the user's history); return the split."""
    data = MovieLens(MovieLensOptions(data_dir=str(data_dir), cache=False)).load(RunContext())
    split = LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())
    users = np.repeat(np.arange(data.n_users), np.diff(data.offsets))
    order = np.arange(data.n_interactions) - data.offsets[users]
    frame = pd.DataFrame({"user_id": data.user_ids[users], "item_id": data.item_ids[data.items], "order": order})
    frame[split.train.visible].to_csv(work / "train.csv", index=False)
    before_test = np.ones(data.n_interactions, dtype=bool)
    before_test[split.test.target_pos] = False
    frame[before_test].to_csv(work / "history.csv", index=False)
    return data, split


def run_recplug(data_dir: Path, work: Path, minutes: float, reuse: bool) -> dict:
    """``recplug run`` of SASRec at CONFIG's size within the budget (unless ``reuse`` and a finished run is in
    ``work``); its test row and fit time."""
    c = CONFIG
    spec = work / "recplug.toml"
    spec.write_text(f"""
[experiment]
name = "peer-sasrec"
seed = {c["seed"]}
registry = "{work / "registry"}"
[dataset.movielens]
data_dir = "{data_dir}"
[splits.leave_one_out]
[evaluation]
metrics = ["ndcg", "hit_rate"]
ks = [10]
[recommenders.sasrec]
max_length = {c["max_length"]}
hidden_units = {c["width"]}
num_blocks = {c["blocks"]}
num_heads = {c["heads"]}
dropout = {c["dropout"]}
loss = "{c["loss"]}"
[recommenders.sasrec.training]
epochs = {c["max_epochs"]}
batch_size = {c["batch_size"]}
lr = {c["lr"]}
max_minutes = {minutes}
monitor = "ndcg@10"
validation_cases = 2000
""")
    if not (reuse and (work / "recplug-run" / "results.json").exists()):
        subprocess.run([sys.executable, "-m", "recplug", "--quiet", "run", str(spec), "--out", str(work / "recplug-run")],
                       check=True)  # fmt: skip
    results = json.loads((work / "recplug-run" / "results.json").read_text())
    rows = {(r["metric"], r["k"]): r["value"] for r in results["rows"] if r["recommender"] == "sasrec"}
    fit = results["fits"][0]
    cases = np.load(next((work / "recplug-run" / "cases" / "leave_one_out" / "sasrec").glob("seed-*.npz")))
    return {"library": "recplug", "ndcg@10": rows[("ndcg", 10)], "hit_rate@10": rows[("hit_rate", 10)],
            "fit_seconds": fit["fit_seconds"], "epochs": len(fit.get("history", [])),
            "target_rank": cases["target_rank"], "users": cases["users"]}  # fmt: skip


def run_peer(python: Path, work: Path, minutes: float, data, split, reuse: bool) -> dict:
    """RecTools' SASRec in its environment (unless ``reuse`` and its lists are in ``work``); its lists scored by
    recplug's metric plugins."""
    if not (reuse and (work / "recs.csv").exists() and (work / "peer.json").exists()):
        subprocess.run([str(python), str(HERE / "rectools_side.py"), str(work), "--minutes", str(minutes),
                        "--config", json.dumps(CONFIG)], check=True)  # fmt: skip
    peer = json.loads((work / "peer.json").read_text())
    recs = pd.read_csv(work / "recs.csv", dtype={"user_id": data.user_ids.dtype, "item_id": data.item_ids.dtype})
    scored = score_lists(recs, data, split)
    return {"library": "rectools", **scored, "fit_seconds": peer["fit_seconds"], "epochs": peer["epochs"],
            "recommend_seconds": peer["recommend_seconds"]}  # fmt: skip


def score_lists(recs: pd.DataFrame, data, split) -> dict:
    """NDCG@10 and HR@10 of ranked lists (``user_id``, ``item_id``, ``rank`` from 1; raw ids) on the test cases,
    by recplug's ``ndcg`` and ``hit_rate`` metric plugins; with each case's user and target rank."""
    users = split.test.users
    user_token = pd.Series(np.arange(data.n_users), index=data.user_ids)
    item_token = pd.Series(np.arange(data.n_items), index=data.item_ids)
    width = int(recs["rank"].max())
    top = np.full((data.n_users, width), -1, dtype=np.int64)
    top[user_token[recs["user_id"]].to_numpy(), recs["rank"].to_numpy() - 1] = item_token[recs["item_id"]].to_numpy()
    top = top[users]
    targets = split.test.targets(data)
    found = top == targets[:, None]
    target_rank = np.where(found.any(1), found.argmax(1), width)
    ranked = RankedLists(torch.from_numpy(top), torch.from_numpy(target_rank), torch.from_numpy(targets),
                         data.n_items, torch.ones(data.n_items, dtype=torch.float64))  # fmt: skip
    metric = {name: get_plugin_manager().get("metric", name) for name in ("ndcg", "hit_rate")}
    value = {name: float(m.cls(m.options_cls()).compute(ranked, 10)) for name, m in metric.items()}
    return {"ndcg@10": value["ndcg"], "hit_rate@10": value["hit_rate"], "target_rank": target_rank,
            "users": data.user_ids[users]}  # fmt: skip


def check_scoring(work: Path, ours: dict, data, split) -> None:
    """The peer's scoring path, fed recplug's own lists, must give recplug's own figures."""
    cases = np.load(next((work / "recplug-run" / "cases" / "leave_one_out" / "sasrec").glob("seed-*.npz")))
    n, width = cases["top_items"].shape
    recs = pd.DataFrame({"user_id": np.repeat(cases["users"], width), "rank": np.tile(np.arange(1, width + 1), n),
                         "item_id": cases["item_ids"][cases["top_items"].reshape(-1)]})  # fmt: skip
    again = score_lists(recs, data, split)
    assert abs(again["ndcg@10"] - ours["ndcg@10"]) < 1e-9 and abs(again["hit_rate@10"] - ours["hit_rate@10"]) < 1e-9


def ndcg_by_user(row: dict, data) -> np.ndarray:
    """Per-case NDCG@10 of a result row, ordered by user token (one leave-one-out case per user)."""
    tokens = pd.Series(np.arange(data.n_users), index=data.user_ids)[row["users"]].to_numpy()
    rank = np.full(data.n_users, np.inf)
    rank[tokens] = row["target_rank"]
    return np.where(rank < 10, 1 / np.log2(np.minimum(rank, 10) + 2.0), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="the wall-clock training budget of each")
    parser.add_argument("--work", type=Path, default=HERE / "work", help="where the exports and results go")
    parser.add_argument("--venv", type=Path, default=HERE / ".venv-rectools", help="the peer's environment")
    parser.add_argument("--reuse", action="store_true", help="score the models already trained in --work again")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("RECPLUG_DATA_DIR", "")) / "ml-1m"
    if not (data_dir / "ratings.dat").exists():
        sys.exit(f"ML-1M not found at {data_dir}: set RECPLUG_DATA_DIR to the folder holding ml-1m/")
    args.work.mkdir(parents=True, exist_ok=True)
    python = peer_python(args.venv)
    data, split = export_split(data_dir, args.work)
    ours = run_recplug(data_dir, args.work, args.minutes, args.reuse)
    check_scoring(args.work, ours, data, split)
    theirs = run_peer(python, args.work, args.minutes, data, split, args.reuse)
    ndcg = {row["library"]: ndcg_by_user(row, data) for row in (ours, theirs)}
    p_value = float(paired_p_values(ndcg["recplug"], ndcg["rectools"], "t-test")[0])
    print(f"\nSASRec on ML-1M leave-one-out, {args.minutes:g} min budget each, CPU threads {torch.get_num_threads()}")
    print(f"{'library':<10} {'NDCG@10':>8} {'HR@10':>7} {'fit s':>7} {'epochs':>6}")
    for row in (ours, theirs):
        print(f"{row['library']:<10} {row['ndcg@10']:>8.4f} {row['hit_rate@10']:>7.4f} {row['fit_seconds']:>7.0f} "
              f"{row['epochs'] if row['epochs'] is not None else '?':>6}")  # fmt: skip
    print(f"NDCG@10 difference {ours['ndcg@10'] - theirs['ndcg@10']:+.4f}, paired t-test p = {p_value:.2g}")
    keep = ("library", "ndcg@10", "hit_rate@10", "fit_seconds", "epochs")
    (args.work / "comparison.json").write_text(json.dumps({
        "minutes": args.minutes, "config": CONFIG, "threads": torch.get_num_threads(), "ndcg_p_value": p_value,
        "rows": [{key: row[key] for key in keep} for row in (ours, theirs)],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
