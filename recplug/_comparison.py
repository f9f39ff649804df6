"""Comparing recommenders on the same test cases: intervals, paired tests against a reference, the tables.

:func:`analyse` adds to a results document (``protocols`` and ``rows``, as results.json holds them), from the
per-case files of :mod:`recplug._cases`, each per-case row's bootstrap interval and, for every row but the
reference's, its difference from the reference with a paired test, Holm-adjusted across the protocol's table.
A recommender trained with several seeds is compared through its per-case values averaged over the seeds.
``recplug run`` and ``recplug compare`` both use it; :func:`results_markdown` renders the tables.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ._cases import CaseResults, per_case_values, read_cases
from ._config import did_you_mean, structure
from ._errors import DataError, SpecError
from ._evaluation import EvaluationOptions, resolve_metrics
from ._metric import Metric
from ._plugin_manager import PluginManager
from ._statistics import bootstrap_intervals, holm, paired_p_values

ANALYSIS_KEYS = ("ci", "difference", "p_value", "p_adjusted", "significant")
"""What :func:`analyse` adds to a row."""
TEST_NAMES = {"t-test": "paired Student's t-test (two-sided)", "wilcoxon": "Wilcoxon signed-rank test (two-sided)"}


def analyse(results: dict[str, Any], cases: list[CaseResults], metrics: dict[str, Metric], options: EvaluationOptions,
            seed: int) -> dict[str, Any]:  # fmt: skip
    """A copy of ``results`` whose per-case rows carry ``ci`` and, against the reference, ``difference``,
    ``p_value``, ``p_adjusted`` and ``significant``; each protocol records how (``analysis``)."""
    results = copy.deepcopy(results)
    by_split: dict[str, dict[str, list[CaseResults]]] = defaultdict(lambda: defaultdict(list))
    for c in cases:
        by_split[c.split][c.recommender].append(c)
    for split, protocol in results["protocols"].items():
        rows = [r for r in results["rows"] if r["split"] == split]
        analysis = _analyse_table(rows, by_split[split], metrics, options, seed)
        if analysis is not None:
            protocol["analysis"] = analysis
    return results


def _analyse_table(rows: list[dict[str, Any]], cases: dict[str, list[CaseResults]], metrics: dict[str, Metric],
                   options: EvaluationOptions, seed: int) -> dict[str, Any] | None:  # fmt: skip
    """Add the analysis to one protocol's ``rows`` (in place) and return its record; None when no row of the
    table has per-case results."""
    labels = [label for label in dict.fromkeys(r["recommender"] for r in rows) if label in cases]
    if not labels:
        return None
    wanted_reference = options.reference
    reference = wanted_reference if wanted_reference is not None and wanted_reference in labels else labels[0]
    _check_same_cases(rows[0]["split"], cases, reference)
    ks = sorted({r["k"] for r in rows})
    wanted = {name: m for name, m in metrics.items() if any(r["metric"] == name for r in rows)}
    values = {label: _seed_mean([per_case_values(c, wanted, ks) for c in cases[label]]) for label in labels}
    keys = [(label, metric, k) for label in labels for (metric, k) in values[label]]
    if not keys:  # no metric of the table is a mean over cases
        return None
    matrix = np.stack([values[label][(metric, k)] for label, metric, k in keys])
    analysed: dict[tuple[str, str, int], dict[str, Any]] = {
        key: {"ci": [float(lo), float(hi)]}
        for key, (lo, hi) in zip(keys, bootstrap_intervals(matrix, options.resamples, options.confidence, seed))
    }  # fmt: skip
    tested = [i for i, (label, _, _) in enumerate(keys) if label != reference]
    if tested:  # each tested row against the reference's row of the same metric and k
        references = np.stack([values[reference][(metric, k)] for _, metric, k in (keys[i] for i in tested)])
        p = paired_p_values(matrix[tested], references, options.test)
        adjusted = holm(p)
        for j, i in enumerate(tested):
            analysed[keys[i]].update(difference=float(matrix[i].mean() - references[j].mean()), p_value=float(p[j]),
                                     p_adjusted=float(adjusted[j]), significant=bool(adjusted[j] < options.alpha))  # fmt: skip
    for row in rows:
        row.update(analysed.get((row["recommender"], row["metric"], row["k"]), {}))
    return {
        "reference": reference, "tests": len(tested), "test": TEST_NAMES[options.test], "alpha": options.alpha,
        "correction": f"Holm-Bonferroni over the {len(tested)} tests of this table (every recommender x metric x k "
                      "against the reference)",
        "intervals": f"{options.confidence:.0%} percentile bootstrap over the test cases, {options.resamples} "
                     f"resamples, seed {seed}",
        "seeds": "a recommender with several seeds is tested through its per-case values averaged over them",
    }  # fmt: skip


def _seed_mean(per_seed: list[dict[tuple[str, int], np.ndarray]]) -> dict[tuple[str, int], np.ndarray]:
    return {key: np.mean([values[key] for values in per_seed], axis=0) for key in per_seed[0]}


def _check_same_cases(split: str, by_recommender: dict[str, list[CaseResults]], reference: str) -> None:
    first = by_recommender[reference][0]
    for label, found in by_recommender.items():
        for c in found:
            same = len(c.users) == len(first.users) and np.array_equal(c.users, first.users) and np.array_equal(
                c.item_ids[c.targets], first.item_ids[first.targets])  # fmt: skip
            if not same:
                raise DataError(f"{label} (seed {c.seed}) was not evaluated on the same test cases as {reference}: "
                                "paired tests need the same cases", where=f"cases/{split}")  # fmt: skip


def results_markdown(results: dict[str, Any]) -> str:
    """One markdown table per protocol: a row per recommender and k, a column per metric; per-case metrics
    show their interval, rows with several seeds their standard deviation, and ``*`` marks a significant
    difference from the reference."""
    out = []
    for split, protocol in results["protocols"].items():
        rows = [r for r in results["rows"] if r["split"] == split]
        metrics = list(dict.fromkeys(r["metric"] for r in rows))
        keys = list(dict.fromkeys((r["recommender"], r["k"]) for r in rows))
        cell = {(r["recommender"], r["k"], r["metric"]): cell_text(r) for r in rows}
        out.append(f"### {split} ({protocol['test_cases']} test cases, {protocol['candidates']}, "
                   f"seen items {'excluded' if protocol['seen_items_excluded'] else 'kept'})\n")
        out.append("| recommender | k | " + " | ".join(metrics) + " |")
        out.append("|---|---:|" + "---:|" * len(metrics))
        for rec, k in keys:
            out.append(f"| {rec} | {k} | " + " | ".join(cell.get((rec, k, m), "") for m in metrics) + " |")
        out.append("")
        analysis = protocol.get("analysis")
        if analysis:
            out.append(analysis_legend(analysis))
        if any(r.get("seeds") for r in rows):
            out.append("±: standard deviation over seeds; the value is their mean.")
        columns, differences = difference_table(rows)
        if differences:
            out.append(f"\nDifference from {analysis['reference']} (adjusted p-value):\n")
            out.append("| recommender | " + " | ".join(columns) + " |")
            out.append("|---|" + "---:|" * len(columns))
            out += [f"| {rec} | " + " | ".join(cells) + " |" for rec, cells in differences]
        out.append("")
    return "\n".join(out)


def analysis_legend(analysis: dict[str, Any]) -> str:
    """What the intervals and the ``*`` marks of a protocol's table mean."""
    text = f"[low, high]: {analysis['intervals']}."
    if analysis.get("tests"):
        text += (f" *: differs from {analysis['reference']} with p < {analysis['alpha']} ({analysis['test']}, "
                 f"{analysis['correction']}).")  # fmt: skip
    return text


def difference_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """One protocol's tested rows as (columns ``metric@k``, [(recommender, cells)]): each cell the difference
    from the reference with its adjusted p-value, ``*`` when significant."""
    tested = [r for r in rows if "p_adjusted" in r]
    columns = list(dict.fromkeys(f"{r['metric']}@{r['k']}" for r in tested))
    cells: dict[str, dict[str, str]] = {}
    for r in tested:
        mark = "*" if r["significant"] else ""
        cells.setdefault(r["recommender"], {})[f"{r['metric']}@{r['k']}"] = (
            f"{r['difference']:+.4f} (p {r['p_adjusted']:.2g}){mark}")
    return columns, [(rec, [by_column.get(c, "") for c in columns]) for rec, by_column in cells.items()]


def cell_text(row: dict[str, Any]) -> str:
    """A table cell: the value, ``±std`` over seeds, ``[low, high]`` interval, ``*`` when significant."""
    text = f"{row['value']:.4f}"
    if row.get("seeds"):
        text += f" ±{row['std']:.4f}"
    if "ci" in row:
        text += f" [{row['ci'][0]:.4f}, {row['ci'][1]:.4f}]"
    return text + ("*" if row.get("significant") else "")


def compare_runs(run_a: Path, run_b: Path, plugins: PluginManager, reference: str | None = None) -> dict[str, Any]:
    """The paired analysis of two run directories' recommenders in one table (a results document).

    Refused unless both runs measured the same data (fingerprint) under the same protocols. A label found in
    both runs is shown as ``<run directory name>:<label>`` (``A:``/``B:`` when the names are equal). The test, level and resamples are run A's.
    """
    documents = [_finished_results(run) for run in (run_a, run_b)]
    fingerprints = [d["data"].get("fingerprint_sha256") for d in documents]
    if fingerprints[0] != fingerprints[1]:
        raise SpecError(f"the runs measured different data (fingerprints {str(fingerprints[0])[:12]} and "
                        f"{str(fingerprints[1])[:12]}): their cases cannot be paired", where=f"{run_a} vs {run_b}")  # fmt: skip
    protocols = [{split: _comparable(p) for split, p in d["protocols"].items()} for d in documents]
    if protocols[0] != protocols[1]:
        differing = sorted(set(protocols[0]) ^ set(protocols[1])) or [
            s for s in protocols[0] if protocols[0][s] != protocols[1][s]]  # fmt: skip
        raise SpecError(f"the runs used different protocols ({', '.join(differing)} differ): their cases cannot be "
                        "paired", where=f"{run_a} vs {run_b}")  # fmt: skip
    labels = [{r["recommender"] for r in d["rows"]} for d in documents]
    shared = labels[0] & labels[1]
    prefixes = (run_a.name, run_b.name) if run_a.name != run_b.name else ("A", "B")

    def renamed(label: str, prefix: str) -> str:
        return f"{prefix}:{label}" if label in shared else label

    rows, cases = [], []
    for run, prefix, document in zip((run_a, run_b), prefixes, documents):
        rows += [{**_without_analysis(r), "recommender": renamed(r["recommender"], prefix)} for r in document["rows"]]
        cases += [attrs.evolve(c, recommender=renamed(c.recommender, prefix)) for c in read_cases(run)]
    names = list(dict.fromkeys(r["recommender"] for r in rows))
    if reference is not None and reference not in names:
        raise SpecError(f"no recommender is labelled {reference!r} in these runs (they have: {', '.join(names)})"
                        f"{did_you_mean(reference, names)}", where="--reference")  # fmt: skip
    recorded = json.loads((run_a / "spec.json").read_text()).get("evaluation", {})
    options = attrs.evolve(structure(recorded, EvaluationOptions, f"{run_a}/spec.json evaluation"), reference=reference)
    document = {**documents[0], "experiment": f"{documents[0]['experiment']} vs {documents[1]['experiment']}",
                "rows": rows, "protocols": copy.deepcopy(documents[0]["protocols"])}  # fmt: skip
    known = {c.name for c in plugins.of_kind("metric")}
    metrics = resolve_metrics([m for m in dict.fromkeys(r["metric"] for r in rows) if m in known], plugins)
    return analyse(document, cases, metrics, options, int(documents[0].get("seed", 0)))


def _finished_results(run: Path) -> dict[str, Any]:
    path = run / "results.json"
    if not path.is_file():
        raise SpecError("not a finished run directory (no results.json inside)", where=str(run))
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"results.json is damaged ({exc})", where=str(path)) from None


def _comparable(protocol: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in protocol.items() if key not in ("analysis", "ks")}


def _without_analysis(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key not in ANALYSIS_KEYS}
