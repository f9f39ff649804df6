"""Running an experiment: build every component from the spec, fit, evaluate, write the run directory."""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from . import _distributed as distributed
from ._cases import case_results, read_cases, write_cases
from ._comparison import analyse, results_markdown
from ._components import Recommender, RunContext
from ._data import Interactions
from ._devices import resolve_device
from ._errors import DataError, SpecError
from ._evaluation import EvaluationOptions, compute_metrics, rank_cases, resolve_metrics, training_popularity
from ._metric import RankedLists
from ._model_registry import ModelRegistry, ServedModel
from ._plugin_manager import PluginManager
from ._run_report import write_run_report
from ._spec import ComponentSpec, ExperimentSpec
from ._split import Split
from ._training import trained_seconds
from ._version import __version__

log = logging.getLogger("recplug")


@attrs.frozen(eq=False)
class FittedRecommender:
    """One recommender fitted under one split, with its test metrics."""

    spec: ComponentSpec
    split: Split
    recommender: Recommender
    metrics: dict[str, dict[int, float]]
    fit_seconds: float
    seed: int


@attrs.frozen(eq=False)
class RunResult:
    run_dir: Path
    data: Interactions
    fitted: list[FittedRecommender]
    results: dict[str, Any]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def new_run_dir(spec: ExperimentSpec) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(spec.experiment.output_dir) / f"{spec.experiment.name}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def read_recorded_spec(run_dir: Path) -> dict[str, Any]:
    """The resolved spec a run directory recorded (what ``--resume`` continues)."""
    saved = run_dir / "spec.json"
    if not saved.is_file():
        raise SpecError("not a run directory (no spec.json inside)", where=str(run_dir))
    try:
        data = json.loads(saved.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"spec.json is damaged ({exc}); the run cannot be resumed", where=str(saved)) from None
    if not isinstance(data, dict):
        raise SpecError("spec.json is damaged (not a table); the run cannot be resumed", where=str(saved))
    return data


def check_output_place(spec: ExperimentSpec, run_dir: Path | None, overwrite: bool = False) -> None:
    """Refuse, before any work, a run directory that cannot be written or that holds another run's work."""
    output_dir = Path(spec.experiment.output_dir)
    if run_dir is None and output_dir.exists() and not output_dir.is_dir():
        raise SpecError(f"{str(output_dir)!r} is a file, not a folder", where="experiment.output_dir")
    if run_dir is None or not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise SpecError(f"{str(run_dir)!r} is a file, not a folder", where="--out")
    if overwrite or not any(run_dir.iterdir()):
        return
    state = "a finished run" if (run_dir / "results.json").exists() else "an unfinished run" if (
        run_dir / "spec.json").exists() else "files"  # fmt: skip
    hint = f"continue it with: recplug run --resume {run_dir}" if state == "an unfinished run" else "choose another --out"
    raise SpecError(f"{str(run_dir)!r} already holds {state}; {hint}, or pass --overwrite to replace it", where="--out")


def run_experiment(
    spec: ExperimentSpec, plugins: PluginManager, run_dir: Path | None = None, resume: bool = False,
    tuning: dict[str, Any] | None = None,
) -> RunResult:
    """Load, split, fit and evaluate everything in ``spec``; write results to the run directory.

    ``tuning`` (from ``recplug tune``) names the tuned recommender and its search; it is recorded with that
    recommender's registry entry and in results.json."""
    seed = spec.experiment.seed
    device = str(resolve_device(spec.experiment.device))
    seed_everything(seed)
    load_context = RunContext(seed=seed, device=device)  # no run directory yet: it exists once data and splits do
    data = load_dataset(spec, plugins, load_context)
    splits = [make_split(s, data, plugins, load_context) for s in spec.splits]

    main = distributed.is_main()  # under torchrun, only rank 0 writes; every rank trains
    run_dir = distributed.broadcast(Path(run_dir) if run_dir else new_run_dir(spec) if main else None)
    if main:  # created only once the data is known to load
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "spec.json").write_text(json.dumps(spec.resolved(), indent=2))
        log.info("run directory: %s (device %s, %d process(es))", run_dir, device, distributed.world_size())
    context = RunContext(seed=seed, device=device, run_dir=str(run_dir), resume=resume)
    metrics = resolve_metrics(spec.evaluation.metrics, plugins)

    fitted: list[FittedRecommender] = []
    for split_spec, split in zip(spec.splits, splits):
        for rec_spec in spec.recommenders:
            seeds = spec.seeds_of(rec_spec)
            for fit_seed in seeds:
                seed_everything(fit_seed)
                recommender = rec_spec.build(plugins)
                folder = run_dir / split_spec.label / rec_spec.label / (f"seed-{fit_seed}" if len(seeds) > 1 else "")
                fit_context = attrs.evolve(context, seed=fit_seed, run_dir=str(folder))
                which = f"{rec_spec.label}" + (f" (seed {fit_seed})" if len(seeds) > 1 else "")
                log.info("fitting %s on %s", which, split_spec.label)
                t0 = time.perf_counter()
                recommender.fit(split.train, split.validation, fit_context)
                # a fit resumed from a checkpoint counts the epochs trained before the resume
                fit_seconds = max(time.perf_counter() - t0, trained_seconds(getattr(recommender, "history", [])))
                log.info("%s on %s: fitted in %.1fs", which, split_spec.label, fit_seconds)
                values = {}
                if main:
                    ranked = rank_test_cases(recommender, data, split, spec.evaluation, which)
                    values = compute_metrics(ranked, metrics, spec.evaluation.ks)
                    write_cases(run_dir, case_results(split.name, rec_spec.label, fit_seed, ranked, data, split.test))
                fitted.append(FittedRecommender(rec_spec, split, recommender, values, fit_seconds, fit_seed))

    if not main:
        distributed.barrier()
        return RunResult(run_dir, data, fitted, {})
    fits = {(f.split.name, f.spec.label, f.seed) for f in fitted}  # not files an earlier run left in the folder
    cases = [c for c in read_cases(run_dir) if (c.split, c.recommender, c.seed) in fits]
    results = analyse(results_document(spec, data, fitted, seed), cases, metrics, spec.evaluation, seed)
    if tuning:
        results["tuning"] = tuning
    if spec.experiment.register:
        results["registered"] = register_models(spec, plugins, data, fitted, results, tuning)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    (run_dir / "results.md").write_text(results_markdown(results))
    write_run_report(run_dir / "results.html", results, cases)
    distributed.barrier()
    return RunResult(run_dir, data, fitted, results)


def load_dataset(spec: ExperimentSpec, plugins: PluginManager, context: RunContext) -> Interactions:
    """The spec's dataset, loaded through its plugin."""
    started = time.perf_counter()
    data = spec.dataset.build(plugins).load(context)
    log.info("loaded %s in %.2fs: %s", spec.dataset.label, time.perf_counter() - started, data.summary())
    return data


def make_split(split_spec: ComponentSpec, data: Interactions, plugins: PluginManager, context: RunContext) -> Split:
    """One protocol's split of ``data``; a split without test cases is an error (its metrics would be NaN)."""
    split = split_spec.build(plugins).split(data, context)
    log.info("split %s: %d validation and %d test cases", split_spec.label, len(split.validation), len(split.test))
    if len(split.test) == 0:
        raise DataError(f"no user has a test case under this protocol ({data.n_users} users, "
                        f"{data.n_interactions} interactions): the data is too small or too short for it",
                        where=f"splits.{split_spec.label}")  # fmt: skip
    return split


def rank_test_cases(recommender: Recommender, data: Interactions, split: Split, options: EvaluationOptions,
                    label: str) -> RankedLists:  # fmt: skip
    """A fitted recommender's ranked lists for the split's test cases (touched here, once)."""
    return rank_cases(recommender, data, split.test, max(options.ks), exclude_seen=options.exclude_seen,
                      batch_size=options.batch_size, max_history=options.max_history,
                      item_popularity=training_popularity(data, split.train.visible), progress=f"evaluating {label}")  # fmt: skip


def protocol_record(split: Split, options: EvaluationOptions) -> dict[str, Any]:
    """How a split's results were measured: recorded beside every result (run directory and registry)."""
    return {
        **split.protocol,
        "evaluated_on": "test cases",
        "test_cases": len(split.test),
        "candidates": "all items (full ranking)",
        "seen_items_excluded": options.exclude_seen,
        "ks": list(options.ks),
    }


def result_rows(split: Split, label: str, plugin: str, kind: str, per_seed: list[dict[str, dict[int, float]]],
                seeds: list[int]) -> list[dict]:  # fmt: skip
    """results.json rows of one recommender under one split: a row per metric and k, the mean over ``seeds``
    (with their values and standard deviation when there are several)."""
    rows = []
    for metric, by_k in per_seed[0].items():
        for k in by_k:
            values = [float(v[metric][k]) for v in per_seed]
            row = {"split": split.name, "recommender": label, "plugin": plugin, "kind": kind, "metric": metric, "k": k,
                   "value": float(np.mean(values))}  # fmt: skip
            if len(values) > 1:
                row.update(seeds=seeds, per_seed=values, std=float(np.std(values, ddof=1)))
            rows.append(row)
    return rows


def register_models(
    spec: ExperimentSpec, plugins: PluginManager, data: Interactions, fitted: list[FittedRecommender], results: dict,
    tuning: dict[str, Any] | None = None,
) -> list[str]:
    """Register every fitted recommender that can be saved (models, and baselines with a ``state_dict``, which
    then serve like models, e.g. as the fallback for new users); returns the ``name:version`` references."""
    registry = ModelRegistry(spec.experiment.registry)
    references = []
    by_name: dict[str, list[tuple[int, float | None]]] = {}
    for f in fitted:
        if type(f.recommender).state_dict is Recommender.state_dict:
            log.info("%s is not registered: its plugin cannot save it (no state_dict)", f.spec.label)
            continue
        name = spec.registered_name(f.spec, f.split.name)
        version = registry.register(
            name,
            f.recommender,
            provenance=f.spec.provenance(plugins),
            spec=spec.resolved(),
            data=data,
            metrics=f.metrics,
            protocol=results["protocols"][f.split.name],
            tuning=tuning if tuning and tuning.get("recommender") == f.spec.label else None,
            seed=f.seed,
        )
        references.append(f"{name}:{version}")
        by_name.setdefault(name, []).append((version, best_validation(getattr(f.recommender, "history", []))))
        log.info("registered %s:%d in %s", name, version, registry.root)
    for name, versions in by_name.items():
        scored = [(value, version) for version, value in versions if value is not None]
        if len(versions) > 1 and scored:
            registry.alias(f"{name}:{max(scored)[1]}", "best")
            log.info("%s@best is version %d (of %d seeds, by validation NDCG@10)", name, max(scored)[1], len(versions))
    return references


def best_validation(history: list[dict[str, float]]) -> float | None:
    """The best validation NDCG@10 of a training history (None without one)."""
    values = [v for epoch in history if (v := epoch.get("validation/ndcg@10")) is not None and v == v]  # not NaN
    return max(values) if values else None


def results_document(spec: ExperimentSpec, data: Interactions, fitted: list[FittedRecommender], seed: int) -> dict:
    """results.json: one row per split x recommender x metric x k (means over seeds), how it was measured, and
    every fit (seed, seconds, training curves)."""
    groups: dict[tuple[str, str], list[FittedRecommender]] = {}
    for f in fitted:
        groups.setdefault((f.split.name, f.spec.label), []).append(f)
    return {
        "experiment": spec.experiment.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recplug_version": __version__,
        "seed": seed,
        "data": {**data.source, **data.summary(), "fingerprint_sha256": data.fingerprint},
        "protocols": {f.split.name: protocol_record(f.split, spec.evaluation) for f in fitted},
        "fit_seconds": {f"{split}/{label}": round(float(np.mean([f.fit_seconds for f in fits])), 2)
                        for (split, label), fits in groups.items()},  # fmt: skip
        "rows": [row for fits in groups.values() for row in result_rows(
            fits[0].split, fits[0].spec.label, fits[0].spec.plugin, fits[0].spec.kind, [f.metrics for f in fits],
            [f.seed for f in fits])],  # fmt: skip
        "fits": [{"split": f.split.name, "recommender": f.spec.label, "seed": f.seed,
                  "fit_seconds": round(f.fit_seconds, 2), "history": _plain_history(getattr(f.recommender, "history", []))}
                 for f in fitted],  # fmt: skip
    }


def _plain_history(history: list[dict[str, float]]) -> list[dict[str, float | None]]:
    """Training curves for JSON: NaN (a measure not taken) becomes null."""
    return [{key: None if isinstance(v, float) and v != v else v for key, v in epoch.items()} for epoch in history]


def evaluate_registered(served: ServedModel, spec: ExperimentSpec, plugins: PluginManager) -> dict[str, Any]:
    """``recplug evaluate``: a registered model measured under ``spec``'s (one) split, on its recorded data.

    Returns the ``protocols`` and ``rows`` of a results document, made by the same code as a run's (with the
    intervals of its per-case metrics).
    """
    context = RunContext(seed=spec.experiment.seed)
    data = load_dataset(spec, plugins, context)
    if data.fingerprint != served.entry["data"]["fingerprint_sha256"]:
        raise SpecError("the data found is not the data this model was trained on (fingerprints differ)",
                        where=str(data.source.get("path", "dataset")))  # fmt: skip
    split = make_split(spec.splits[0], data, plugins, context)
    metrics = resolve_metrics(spec.evaluation.metrics, plugins)
    ranked = rank_test_cases(served.recommender, data, split, spec.evaluation, served.ref)
    values = compute_metrics(ranked, metrics, spec.evaluation.ks)
    plugin, seed = served.entry["plugin"], spec.experiment.seed
    document = {
        "protocols": {split.name: protocol_record(split, spec.evaluation)},
        "rows": result_rows(split, served.ref, plugin["name"], plugin["kind"], [values], [seed]),
    }
    cases = [case_results(split.name, served.ref, seed, ranked, data, split.test)]
    return analyse(document, cases, metrics, spec.evaluation, seed)
