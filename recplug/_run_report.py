"""``results.html``: a run's report, one self-contained page written with every run.

The tables with intervals and significance marks, metric@k curves per recommender (from the per-case files),
training curves (from each fit's history) and fit times. Plots need matplotlib (``recplug[report]``); without
it the page has the tables and says how to get the plots.
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ._cases import CaseResults
from ._comparison import analysis_legend, cell_text, difference_table
from ._plots import STYLE, can_plot, figure_html

CURVE_METRICS = {"hit_rate": "hits", "ndcg": "ndcgs"}
"""Metric@k curves drawn for every k from 1 to the largest evaluated: name -> RankedLists method."""


def write_run_report(path: Path, results: dict[str, Any], cases: list[CaseResults]) -> None:
    """Write the report of ``results`` (a results document after :func:`~recplug._comparison.analyse`)."""
    data = results["data"]
    plots = can_plot()
    parts = [
        f"<h1>recplug run: {html.escape(results['experiment'])}</h1>",
        f"<p>{results['created']}, recplug {html.escape(results['recplug_version'])}, seed {results['seed']}. Data: "
        f"{data.get('users', '?')} users, {data.get('items', '?')} items, {data.get('interactions', '?')} interactions "
        f"(fingerprint {html.escape(str(data.get('fingerprint_sha256', ''))[:12])}).</p>",
    ]  # fmt: skip
    if not plots:
        parts.append("<p class=note>The plots need matplotlib: pip install 'recplug[report]'</p>")
    for split, protocol in results["protocols"].items():
        parts += [f"<h2>{html.escape(split)}</h2>", f"<p>{_protocol_text(protocol)}</p>",
                  _table(split, results["rows"]), _legend(protocol, results["rows"], split),
                  _differences(protocol, [r for r in results["rows"] if r["split"] == split])]  # fmt: skip
        order = list(dict.fromkeys(r["recommender"] for r in results["rows"] if r["split"] == split))
        split_cases = sorted((c for c in cases if c.split == split), key=lambda c: _position(order, c.recommender))
        if plots and split_cases:
            parts += [f"<h3>{html.escape(name)}@k</h3>" + figure_html(_at_k_plot, split_cases, name)
                      for name in CURVE_METRICS if any(r["metric"] == name for r in results["rows"])]  # fmt: skip
    fits = results.get("fits", [])
    if plots and any(f["history"] for f in fits):
        parts += ["<h2>Training curves</h2>", figure_html(_curve_plot, fits, "loss/train"),
                  figure_html(_curve_plot, fits, "validation/ndcg@10")]  # fmt: skip
    if plots and fits:
        size = (8, 1 + 0.3 * len(results["fit_seconds"]))
        parts += ["<h2>Fit times</h2>", figure_html(_fit_times_plot, results["fit_seconds"], size=size)]
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>recplug run: {html.escape(results['experiment'])}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")  # fmt: skip
    path.write_text(page, encoding="utf-8")


def _protocol_text(protocol: dict[str, Any]) -> str:
    seen = "excluded" if protocol["seen_items_excluded"] else "kept"
    return html.escape(f"{protocol.get('splitter', '')}: {protocol['test_cases']} test cases, {protocol['candidates']}, "
                       f"seen items {seen}.")  # fmt: skip


def _table(split: str, all_rows: list[dict[str, Any]]) -> str:
    rows = [r for r in all_rows if r["split"] == split]
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    keys = list(dict.fromkeys((r["recommender"], r["k"]) for r in rows))
    by_key = {(r["recommender"], r["k"], r["metric"]): r for r in rows}
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["recommender", "k", *metrics])
    body = []
    for rec, k in keys:
        cells = []
        for m in metrics:
            row = by_key.get((rec, k, m))
            title = f' title="p = {row["p_value"]:.3g}, adjusted {row["p_adjusted"]:.3g}"' if row and "p_value" in row else ""
            cells.append(f"<td{title}>{html.escape(cell_text(row)) if row else ''}</td>")
        body.append(f"<tr><td class=label>{html.escape(rec)}</td><td>{k}</td>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _legend(protocol: dict[str, Any], rows: list[dict[str, Any]], split: str) -> str:
    notes = []
    analysis = protocol.get("analysis")
    if analysis:
        notes.append(analysis_legend(analysis) + (" Hover a cell for its p-values." if analysis.get("tests") else ""))
    if any(r.get("seeds") for r in rows if r["split"] == split):
        notes.append("±: standard deviation over seeds; the value is their mean.")
    return f"<p class=note>{html.escape(' '.join(notes))}</p>" if notes else ""


def _differences(protocol: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    columns, differences = difference_table(rows)
    if not differences:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["recommender", *columns])
    body = "".join(f"<tr><td class=label>{html.escape(rec)}</td>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                   + "</tr>" for rec, cells in differences)  # fmt: skip
    reference = html.escape(protocol["analysis"]["reference"])
    return f"<h3>Difference from {reference} (adjusted p-value)</h3><table><tr>{head}</tr>{body}</table>"


def _position(order: list[str], label: str) -> int:
    """Where ``label`` stands in the table (so a recommender keeps its colour in every plot)."""
    return order.index(label) if label in order else len(order)


def _beside(axes: Any) -> None:
    """The legend to the right of the plot, where it hides no curve."""
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _at_k_plot(axes: Any, cases: list[CaseResults], metric: str) -> None:
    by_recommender: dict[str, list[CaseResults]] = defaultdict(list)
    for c in cases:
        by_recommender[c.recommender].append(c)
    for label, found in by_recommender.items():
        ks = np.arange(1, found[0].max_k + 1)
        per_seed = []
        for c in found:  # each seed's lists are built once, then read at every k
            at_k = getattr(c.ranked(), CURVE_METRICS[metric])
            per_seed.append([at_k(int(k)).mean().item() for k in ks])
        axes.plot(ks, np.mean(per_seed, axis=0), marker=".", label=label)
    axes.set_xlabel("k")
    axes.set_ylabel(f"{metric}@k")
    _beside(axes)


def _curve_plot(axes: Any, fits: list[dict[str, Any]], measure: str) -> None:
    """One line per fit; losses on a log scale (losses of different kinds differ by orders of magnitude)."""
    for fit in fits:
        points = [(e["epoch"], e[measure]) for e in fit["history"] if e.get(measure) is not None]
        if points:
            several = sum(f["recommender"] == fit["recommender"] and f["split"] == fit["split"] for f in fits) > 1
            label = f"{fit['recommender']}" + (f" seed {fit['seed']}" if several else "") + f" ({fit['split']})"
            axes.plot(*zip(*points), marker=".", label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel(measure)
    if measure.startswith("loss/") and all(y > 0 for line in axes.get_lines() for y in line.get_ydata()):
        axes.set_yscale("log")
        from matplotlib.ticker import FormatStrFormatter

        for axis in (axes.yaxis.set_major_formatter, axes.yaxis.set_minor_formatter):
            axis(FormatStrFormatter("%g"))  # 5, 6, 7 rather than 5x10^0 on a short log range
    _beside(axes)


def _fit_times_plot(axes: Any, seconds: dict[str, float]) -> None:
    names = list(seconds)[::-1]
    axes.barh(names, [seconds[n] for n in names], color="tab:blue")
    axes.set_xlabel("fit seconds (mean over seeds)")
