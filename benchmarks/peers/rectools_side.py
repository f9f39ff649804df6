"""The peer's half of sasrec_vs_rectools.py: runs in RecTools' own virtual environment, never imports recplug.

Reads ``train.csv`` (the leave-one-out training interactions) and ``history.csv`` (every test user's history:
all but the last interaction) from WORK, trains RecTools' SASRec for at most ``--minutes`` of wall time, and
writes ``recs.csv`` (each test user's top ``--k``, seen items filtered) and ``peer.json`` (timings, settings).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import torch
from pytorch_lightning import Trainer
from rectools import Columns
from rectools.dataset import Dataset
from rectools.models import SASRecModel


def load(path: Path) -> Dataset:
    frame = pd.read_csv(path)
    frame[Columns.Datetime] = pd.to_datetime(frame["order"], unit="s")  # the order within each user's history
    frame[Columns.Weight] = 1.0
    return Dataset.construct(frame[[Columns.User, Columns.Item, Columns.Weight, Columns.Datetime]])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("work", type=Path)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--config", required=True, help="JSON: the architecture and optimisation settings")
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args()
    config = json.loads(args.config)
    torch.manual_seed(config["seed"])
    train, history = load(args.work / "train.csv"), load(args.work / "history.csv")

    def trainer() -> Trainer:
        return Trainer(max_epochs=config["max_epochs"], max_time=timedelta(minutes=args.minutes), accelerator="cpu",
                       devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)  # fmt: skip

    model = SASRecModel(
        n_blocks=config["blocks"], n_heads=config["heads"], n_factors=config["width"],
        session_max_len=config["max_length"], dropout_rate=config["dropout"], loss=config["loss"],
        lr=config["lr"], batch_size=config["batch_size"], epochs=config["max_epochs"],
        deterministic=False, get_trainer_func=trainer,
    )  # fmt: skip
    started = time.perf_counter()
    model.fit(train)
    fit_seconds = time.perf_counter() - started
    epochs = int(model.fit_trainer.current_epoch)  # completed epochs (Lightning stops mid-epoch at max_time)
    started = time.perf_counter()
    users = history.user_id_map.external_ids
    recs = model.recommend(users=users, dataset=history, k=args.k, filter_viewed=True)
    recommend_seconds = time.perf_counter() - started
    recs[[Columns.User, Columns.Item, Columns.Rank]].to_csv(args.work / "recs.csv", index=False)
    (args.work / "peer.json").write_text(json.dumps({
        "library": "rectools", "fit_seconds": fit_seconds, "recommend_seconds": recommend_seconds,
        "epochs": epochs, "threads": torch.get_num_threads(), "config": config,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
