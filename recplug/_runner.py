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
from ._components import Recommender, RunContext
from ._data import Interactions
from ._evaluation import evaluate, resolve_metrics, training_popularity
from ._plugin_manager import PluginManager
from ._spec import ComponentSpec, ExperimentSpec
from ._split import Split
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


def run_experiment(
    spec: ExperimentSpec, registry: PluginManager, run_dir: Path | None = None, resume: bool = False
) -> RunResult:
    """Load, split, fit and evaluate everything in ``spec``; write results to the run directory."""
    from ._devices import resolve_device

    seed = spec.experiment.seed
    device = str(resolve_device(spec.experiment.device))
    seed_everything(seed)
    started = time.perf_counter()
    data = _build(registry, spec.dataset).load(RunContext(seed=seed, device=device))
    log.info("loaded %s in %.2fs: %s", spec.dataset.label, time.perf_counter() - started, data.summary())

    main = distributed.is_main()  # under torchrun, only rank 0 writes; every rank trains
    run_dir = distributed.broadcast(Path(run_dir) if run_dir else new_run_dir(spec) if main else None)
    if main:  # created only once the data is known to load
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "spec.json").write_text(json.dumps(spec.resolved(), indent=2))
        log.info("run directory: %s (device %s, %d process(es))", run_dir, device, distributed.world_size())
    context = RunContext(seed=seed, device=device, run_dir=str(run_dir), resume=resume)
    metrics = resolve_metrics(spec.evaluation.metrics, registry)

    fitted: list[FittedRecommender] = []
    for split_spec in spec.splits:
        split = _build(registry, split_spec).split(data, context)
        log.info("split %s: %d validation and %d test cases", split_spec.label, len(split.validation), len(split.test))
        popularity = training_popularity(data, split.train.visible)
        for rec_spec in spec.recommenders:
            seed_everything(seed)
            recommender = _build(registry, rec_spec)
            component_dir = run_dir / split_spec.label / rec_spec.label
            fit_context = attrs.evolve(context, run_dir=str(component_dir))
            log.info("fitting %s on %s", rec_spec.label, split_spec.label)
            t0 = time.perf_counter()
            recommender.fit(split.train, split.validation, fit_context)
            fit_seconds = time.perf_counter() - t0
            values = evaluate(
                recommender, data, split.test, metrics, spec.evaluation, popularity, progress=f"evaluating {rec_spec.label}"
            ) if main else {}  # fmt: skip
            log.info("%s on %s: fitted in %.1fs", rec_spec.label, split_spec.label, fit_seconds)
            fitted.append(FittedRecommender(rec_spec, split, recommender, values, fit_seconds))

    if not main:
        distributed.barrier()
        return RunResult(run_dir, data, fitted, {})
    results = results_document(spec, data, fitted, seed)
    if spec.experiment.register:
        results["registered"] = register_models(spec, registry, data, fitted, results)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    (run_dir / "results.md").write_text(results_markdown(results))
    distributed.barrier()
    return RunResult(run_dir, data, fitted, results)


def register_models(
    spec: ExperimentSpec, plugins: PluginManager, data: Interactions, fitted: list[FittedRecommender], results: dict
) -> list[str]:
    """Register every trained model; returns the ``name:version`` references."""
    from ._config import unstructure
    from ._model_registry import ModelRegistry

    registry = ModelRegistry(spec.experiment.registry)
    references = []
    for f in fitted:
        if f.spec.kind != "model":
            continue
        name = f.spec.register_as or f"{spec.experiment.name}-{f.spec.label}"
        if len(spec.splits) > 1:
            name = f"{name}-{f.split.name}"
        component = plugins.get(f.spec.kind, f.spec.plugin)
        version = registry.register(
            name,
            f.recommender,
            plugin={"kind": component.kind, "name": component.name, "distribution": component.distribution,
                    "version": component.version},
            options=unstructure(f.spec.options),
            training=unstructure(f.spec.training),
            spec=spec.resolved(),
            data=data,
            metrics=f.metrics,
            protocol=results["protocols"][f.split.name],
        )  # fmt: skip
        references.append(f"{name}:{version}")
        log.info("registered %s:%d in %s", name, version, registry.root)
    return references


def _build(registry: PluginManager, component: ComponentSpec) -> Any:
    cls = registry.get(component.kind, component.plugin).cls
    if component.kind == "model":
        return cls(component.options, component.training)
    return cls(component.options)


def results_document(spec: ExperimentSpec, data: Interactions, fitted: list[FittedRecommender], seed: int) -> dict:
    """results.json: one row per split x recommender x metric x k, and how it was measured."""
    rows = [
        {"split": f.split.name, "recommender": f.spec.label, "plugin": f.spec.plugin, "kind": f.spec.kind,
         "metric": metric, "k": k, "value": value}
        for f in fitted for metric, by_k in f.metrics.items() for k, value in by_k.items()
    ]  # fmt: skip
    protocols = {}
    for f in fitted:
        protocols[f.split.name] = {
            **f.split.protocol,
            "evaluated_on": "test cases",
            "test_cases": len(f.split.test),
            "candidates": "all items (full ranking)",
            "seen_items_excluded": spec.evaluation.exclude_seen,
            "ks": spec.evaluation.ks,
        }
    return {
        "experiment": spec.experiment.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recplug_version": __version__,
        "seed": seed,
        "data": {**data.source, **data.summary(), "fingerprint_sha256": data.fingerprint},
        "protocols": protocols,
        "fit_seconds": {f"{f.split.name}/{f.spec.label}": round(f.fit_seconds, 2) for f in fitted},
        "rows": rows,
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
