"""Per-case results: what each recommender ranked for every test case, kept in the run directory.

One compressed ``.npz`` per split x recommender x seed, at ``cases/<split>/<recommender>/seed-<seed>.npz``:

- ``users``: the raw user id of each case; ``targets``: each case's target (item token);
- ``target_rank``: the target's 0-based position in the recommended list, ``max_k`` when it is absent;
- ``top_items``: the recommended item tokens ``[cases, max_k]``, best first; ``item_ids``: the raw id of each token.

Any per-case metric at any ``k <= max_k`` can be recomputed from these files (:func:`per_case_values`), and
:func:`export_ranx` writes them as TREC run and qrels files that ``ranx`` (and ``trec_eval``) read.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import attrs
import numpy as np
import pandas as pd
import torch

from ._data import Interactions
from ._errors import DataError
from ._metric import Metric, RankedLists
from ._split import EvalCases

CASES_DIR = "cases"


@attrs.frozen(eq=False)
class CaseResults:
    """One recommender's (one seed's) ranked list for every test case of one split."""

    split: str
    recommender: str
    seed: int
    users: np.ndarray
    targets: np.ndarray
    target_rank: np.ndarray
    top_items: np.ndarray
    item_ids: np.ndarray

    @property
    def max_k(self) -> int:
        return int(self.top_items.shape[1])

    def ranked(self) -> RankedLists:
        """The cases as :class:`RankedLists` (no popularity or metadata: for per-case metrics)."""
        return RankedLists(
            top_items=torch.from_numpy(self.top_items.astype(np.int64)),
            target_rank=torch.from_numpy(self.target_rank.astype(np.int64)),
            targets=torch.from_numpy(self.targets.astype(np.int64)),
            n_items=len(self.item_ids),
            item_popularity=torch.zeros(len(self.item_ids), dtype=torch.float64),
        )  # fmt: skip


def case_file(run_dir: Path, split: str, recommender: str, seed: int) -> Path:
    return Path(run_dir) / CASES_DIR / split / recommender / f"seed-{seed}.npz"


def case_results(split: str, recommender: str, seed: int, ranked: RankedLists, data: Interactions,
                 cases: EvalCases) -> CaseResults:  # fmt: skip
    """What ``ranked`` (a recommender's ranking of ``cases``) keeps per case."""
    return CaseResults(
        split, recommender, seed,
        users=data.user_ids[cases.users],
        targets=ranked.targets.numpy().astype(np.int32),
        target_rank=ranked.target_rank.numpy().astype(np.int32),
        top_items=ranked.top_items.numpy().astype(np.int32),
        item_ids=data.item_ids,
    )  # fmt: skip


def write_cases(run_dir: Path, results: CaseResults) -> Path:
    """Save one recommender's per-case results (written to a temporary name, then moved into place)."""
    path = case_file(run_dir, results.split, results.recommender, results.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(partial, users=results.users, targets=results.targets, target_rank=results.target_rank,
                        top_items=results.top_items, item_ids=results.item_ids)  # fmt: skip
    partial.replace(path)
    return path


def read_cases(run_dir: Path) -> list[CaseResults]:
    """Every per-case file of a run directory, sorted by split, recommender and seed."""
    found = []
    for path in sorted((Path(run_dir) / CASES_DIR).glob("*/*/seed-*.npz")):
        if path.name.endswith(".partial.npz"):
            continue
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in ("users", "targets", "target_rank", "top_items", "item_ids")}
            seed = int(path.stem.removeprefix("seed-"))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"a per-case results file is damaged or not recplug's ({exc})", where=str(path)) from None
        found.append(CaseResults(path.parent.parent.name, path.parent.name, seed, **arrays))
    return found


def per_case_values(results: CaseResults, metrics: dict[str, Metric], ks: list[int]) -> dict[tuple[str, int], np.ndarray]:
    """``{(metric, k): float64 [cases]}`` for every metric that is a mean over cases, at every ``k``."""
    ranked = results.ranked()
    values = {}
    for name, metric in metrics.items():
        for k in ks:
            per_case = metric.per_case(ranked, k)
            if per_case is not None:
                values[(name, k)] = per_case.numpy().astype(np.float64)
    return values


def export_ranx(run_dir: Path, out: Path) -> list[Path]:
    """Write ``<split>.qrels`` and ``<split>.<recommender>.seed-<seed>.run`` (TREC formats) into ``out``.

    A case is the query ``<user>.<n>`` (its user's ``n``-th test case, from 0); the relevant document is its
    target; a run lists the recommended items with score ``max_k - rank``, so higher is better.
    """
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    done_qrels = set()
    for r in read_cases(run_dir):
        users = pd.Series(r.users.astype(str))
        queries = (users + "." + users.groupby(users).cumcount().astype(str)).to_numpy()
        if r.split not in done_qrels:
            qrels = pd.DataFrame({"q": queries, "iter": 0, "doc": r.item_ids[r.targets].astype(str), "rel": 1})
            written.append(_write_trec(qrels, out / f"{r.split}.qrels"))
            done_qrels.add(r.split)
        ranks = np.tile(np.arange(r.max_k), len(queries))
        run = pd.DataFrame({
            "q": np.repeat(queries, r.max_k), "Q0": "Q0", "doc": r.item_ids[r.top_items.reshape(-1)].astype(str),
            "rank": ranks + 1, "score": r.max_k - ranks, "name": f"{r.recommender}.seed-{r.seed}",
        })  # fmt: skip
        written.append(_write_trec(run, out / f"{r.split}.{r.recommender}.seed-{r.seed}.run"))
    if not written:
        raise DataError("no per-case results in this run directory (runs made before recplug kept them have none)",
                        where=str(run_dir))  # fmt: skip
    return written


def _write_trec(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, sep=" ", header=False, index=False)
    return path
