"""Running an experiment: build every component from the spec, fit, evaluate, write the run directory."""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch

from . import _distributed as distributed
from ._components import Recommender, RunContext
from ._data import Interactions
from ._devices import resolve_device
from ._errors import DataError, SpecError
from ._evaluation import EvaluationOptions, evaluate, resolve_metrics, training_popularity
from ._metric import Metric
from ._plugin_manager import PluginManager
from ._spec import ComponentSpec, ExperimentSpec
from ._split import Split
from ._version import __version__

if TYPE_CHECKING:
    from ._model_registry import ServedModel

log = logging.getLogger("recplug")


@attrs.frozen(eq=False)
class FittedRecommender:
    """One recommender fitted under one split, with its test metrics."""

    spec: ComponentSpec
    split: Split
    recommender: Recommender
    metrics: dict[str, dict[int, float]]
    fit_seconds: float


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
            seed_everything(seed)
            recommender = rec_spec.build(plugins)
            fit_context = attrs.evolve(context, run_dir=str(run_dir / split_spec.label / rec_spec.label))
            log.info("fitting %s on %s", rec_spec.label, split_spec.label)
            t0 = time.perf_counter()
            recommender.fit(split.train, split.validation, fit_context)
            fit_seconds = time.perf_counter() - t0
            log.info("%s on %s: fitted in %.1fs", rec_spec.label, split_spec.label, fit_seconds)
            values = evaluate_on_test(recommender, data, split, metrics, spec.evaluation, rec_spec.label) if main else {}
            fitted.append(FittedRecommender(rec_spec, split, recommender, values, fit_seconds))

    if not main:
        distributed.barrier()
        return RunResult(run_dir, data, fitted, {})
    results = results_document(spec, data, fitted, seed)
    if tuning:
        results["tuning"] = tuning
    if spec.experiment.register:
        results["registered"] = register_models(spec, plugins, data, fitted, results, tuning)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    (run_dir / "results.md").write_text(results_markdown(results))
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


def evaluate_on_test(recommender: Recommender, data: Interactions, split: Split, metrics: dict[str, Metric],
                     options: EvaluationOptions, label: str) -> dict[str, dict[int, float]]:  # fmt: skip
    """The metrics of a fitted recommender on the split's test cases (touched here, once)."""
    popularity = training_popularity(data, split.train.visible)
    return evaluate(recommender, data, split.test, metrics, options, popularity, progress=f"evaluating {label}")


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


def result_rows(split: Split, label: str, plugin: str, kind: str, values: dict[str, dict[int, float]]) -> list[dict]:
    """results.json rows of one recommender under one split: a row per metric and k."""
    return [{"split": split.name, "recommender": label, "plugin": plugin, "kind": kind, "metric": metric, "k": k,
             "value": value} for metric, by_k in values.items() for k, value in by_k.items()]  # fmt: skip


def register_models(
    spec: ExperimentSpec, plugins: PluginManager, data: Interactions, fitted: list[FittedRecommender], results: dict,
    tuning: dict[str, Any] | None = None,
) -> list[str]:
    """Register every fitted recommender that can be saved (models, and baselines with a ``state_dict``, which
    then serve like models, e.g. as the fallback for new users); returns the ``name:version`` references."""
    from ._model_registry import ModelRegistry

    registry = ModelRegistry(spec.experiment.registry)
    references = []
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
        )
        references.append(f"{name}:{version}")
        log.info("registered %s:%d in %s", name, version, registry.root)
    return references


def results_document(spec: ExperimentSpec, data: Interactions, fitted: list[FittedRecommender], seed: int) -> dict:
    """results.json: one row per split x recommender x metric x k, and how it was measured."""
    return {
        "experiment": spec.experiment.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recplug_version": __version__,
        "seed": seed,
        "data": {**data.source, **data.summary(), "fingerprint_sha256": data.fingerprint},
        "protocols": {f.split.name: protocol_record(f.split, spec.evaluation) for f in fitted},
        "fit_seconds": {f"{f.split.name}/{f.spec.label}": round(f.fit_seconds, 2) for f in fitted},
        "rows": [row for f in fitted for row in result_rows(f.split, f.spec.label, f.spec.plugin, f.spec.kind, f.metrics)],
    }


def evaluate_registered(served: ServedModel, spec: ExperimentSpec, plugins: PluginManager) -> dict[str, Any]:
    """``recplug evaluate``: a registered model measured under ``spec``'s (one) split, on its recorded data.

    Returns the ``protocols`` and ``rows`` of a results document, made by the same code as a run's.
    """
    context = RunContext(seed=spec.experiment.seed)
    data = load_dataset(spec, plugins, context)
    if data.fingerprint != served.entry["data"]["fingerprint_sha256"]:
        raise SpecError("the data found is not the data this model was trained on (fingerprints differ)",
                        where=str(data.source.get("path", "dataset")))  # fmt: skip
    split = make_split(spec.splits[0], data, plugins, context)
    metrics = resolve_metrics(spec.evaluation.metrics, plugins)
    values = evaluate_on_test(served.recommender, data, split, metrics, spec.evaluation, served.ref)
    plugin = served.entry["plugin"]
    return {
        "protocols": {split.name: protocol_record(split, spec.evaluation)},
        "rows": result_rows(split, served.ref, plugin["name"], plugin["kind"], values),
    }


def results_markdown(results: dict) -> str:
    """One markdown table per split: a row per recommender and k, a column per metric."""
    out = []
    for split, protocol in results["protocols"].items():
        rows = [r for r in results["rows"] if r["split"] == split]
        metrics = list(dict.fromkeys(r["metric"] for r in rows))
        keys = list(dict.fromkeys((r["recommender"], r["k"]) for r in rows))
        value = {(r["recommender"], r["k"], r["metric"]): r["value"] for r in rows}
        out.append(f"### {split} ({protocol['test_cases']} test cases, {protocol['candidates']}, "
                   f"seen items {'excluded' if protocol['seen_items_excluded'] else 'kept'})\n")
        out.append("| recommender | k | " + " | ".join(metrics) + " |")
        out.append("|---|---:|" + "---:|" * len(metrics))
        for rec, k in keys:
            out.append(f"| {rec} | {k} | " + " | ".join(f"{value[(rec, k, m)]:.4f}" for m in metrics) + " |")
        out.append("")
    return "\n".join(out)
