"""``tune.html``: a search's report, one self-contained page (plots embedded as PNG, so it works offline)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._plots import STYLE, figure_html

if TYPE_CHECKING:
    import optuna


def write_report(path: Path, study: optuna.Study, metric: str, summary: dict[str, Any]) -> None:
    """The trials table, the optimisation history, parameter importance, time per trial and the best trial's
    validation and test figures."""
    rows = study_table(study)
    counts = summary["trials"]
    test = {(r["metric"], r["k"]): r["value"] for r in summary["test"]}
    seconds = [r["seconds"] for r in rows if r["seconds"] is not None]
    parts = [
        f"<h1>recplug tune: {html.escape(summary['study'])}</h1>",
        f"<p>{len(rows)} trials: {', '.join(f'{n} {s}' for s, n in counts.items())}; "
        f"{sum(seconds):.0f} s of fitting, {sum(seconds) / max(len(seconds), 1):.0f} s per trial on average. "
        f"Objective: validation {html.escape(metric)} (the test cases are used once, by the best configuration's "
        "final run).</p>",
        f"<h2>Best: trial {summary['trial']}</h2><p>validation {html.escape(metric)} "
        f"{summary['validation'][metric]:.4f}; test " + ", ".join(
            f"{m}@{k} {v:.4f}" for (m, k), v in test.items() if m in ("ndcg", "hit_rate", "mrr")) + "</p>",
        f"<p class=params>{html.escape(', '.join(f'{k} = {v!r}' for k, v in summary['params'].items()))}</p>",
        "<h2>Optimisation history</h2>", figure_html(_history_plot, rows, metric),
        "<h2>Validation per epoch</h2>", figure_html(_curves_plot, study, metric),
        "<h2>Parameter importance</h2>", _importance(study),
        "<h2>Trials</h2>", _trials_table(rows, metric),
    ]  # fmt: skip
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>recplug tune: {html.escape(summary['study'])}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")  # fmt: skip
    path.write_text(page, encoding="utf-8")


def study_table(study: optuna.Study) -> list[dict[str, Any]]:
    """A row per trial: number, state, value, epochs trained, seconds and parameters."""
    return [{"trial": t.number, "state": t.state.name.lower(), "value": t.value,
             "epochs": len(t.user_attrs.get("curve", [])), "seconds": t.user_attrs.get("fit_seconds"),
             "params": t.params} for t in study.get_trials(deepcopy=False)]  # fmt: skip


def _history_plot(axes: Any, rows: list[dict[str, Any]], metric: str) -> None:
    finished = [r for r in rows if r["state"] == "complete"]
    pruned = [r for r in rows if r["state"] == "pruned"]
    axes.scatter([r["trial"] for r in finished], [r["value"] for r in finished], label="complete", color="tab:blue")
    axes.scatter([r["trial"] for r in pruned], [0.0] * len(pruned), label="pruned (no final value)", marker="x",
                 color="tab:gray")  # fmt: skip
    best, line = -math.inf, []
    for r in finished:
        best = max(best, r["value"])
        line.append((r["trial"], best))
    if line:
        axes.step(*zip(*line), where="post", label="best so far", color="tab:orange")
    axes.set_xlabel("trial")
    axes.set_ylabel(f"validation {metric}")
    axes.legend(loc="lower right")


def _curves_plot(axes: Any, study: optuna.Study, metric: str) -> None:
    for trial in study.get_trials(deepcopy=False):
        curve = trial.user_attrs.get("curve", [])
        if curve:
            style = "--" if trial.state.name == "PRUNED" else "-"
            axes.plot(range(1, len(curve) + 1), curve, style, alpha=0.7, label=f"{trial.number}")
    axes.set_xlabel("epoch (dashed: pruned)")
    axes.set_ylabel(f"validation {metric}")


def _importance(study: optuna.Study) -> str:
    import optuna

    try:
        importance = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:  # fewer than two finished trials, or a single parameter value
        return f"<p class=note>not available: {html.escape(str(exc))}</p>"
    if not importance:
        return "<p class=note>not available: no parameter varied</p>"

    def draw(axes: Any) -> None:
        names = list(importance)[::-1]
        axes.barh(names, [importance[n] for n in names], color="tab:blue")
        axes.set_xlabel("importance (fANOVA, share of the objective's variance)")

    draw.__name__ = "_importance_plot"
    return figure_html(draw)


def _trials_table(rows: list[dict[str, Any]], metric: str) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["trial", "state", f"validation {metric}", "epochs", "seconds", *keys])
    body = []
    for r in rows:
        value = f"{r['value']:.4f}" if r["value"] is not None else "-"
        cells = [r["trial"], r["state"], value, r["epochs"], r["seconds"] if r["seconds"] is not None else "-",
                 *(_short(r["params"].get(k, "-")) for k in keys)]  # fmt: skip
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _short(value: Any) -> Any:
    return f"{value:.4g}" if isinstance(value, float) else value
