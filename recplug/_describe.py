"""``recplug data describe``: what users check first about a dataset and each protocol's split of it: size,
density, sequence lengths, time span, repeat consumption, cleaning, cold start, and how much of each test set
happens before the latest training interaction (the future a protocol lets a model see)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._components import RunContext
from ._data import Interactions, format_moment
from ._plugin_manager import PluginManager
from ._spec import ExperimentSpec
from ._split import EvalCases, Split

PERCENTILES = (0, 5, 25, 50, 75, 95, 100)


def describe(spec: ExperimentSpec, plugins: PluginManager) -> dict[str, Any]:
    """The description of ``spec``'s dataset and of its every split (the split's own protocol record included)."""
    from ._runner import load_dataset, make_split

    context = RunContext(seed=spec.experiment.seed)
    data = load_dataset(spec, plugins, context)
    splits = [make_split(s, data, plugins, context) for s in spec.splits]
    return {"dataset": describe_data(data), "splits": {s.name: describe_split(data, s) for s in splits}}


def describe_data(data: Interactions) -> dict[str, Any]:
    """Counts, density, sequence-length percentiles, time span and repeat-consumption rate of ``data``."""
    lengths = data.lengths
    times = np.asarray(data.timestamps)
    pairs = data.user_of.astype(np.int64) * max(data.n_items, 1) + np.asarray(data.items)
    repeats = data.n_interactions - len(np.unique(pairs))
    cleaning = {k: data.source[k] for k in ("rows_read", "duplicate_rows_dropped", "unknown_items", "unknown_users",
                                            "filters") if data.source.get(k) is not None}  # fmt: skip
    return {
        "source": {k: v for k, v in data.source.items() if k not in cleaning},
        **data.summary(),
        "density": data.n_interactions / max(data.n_users * data.n_items, 1),
        "sequence_length": {f"p{p}": float(np.percentile(lengths, p)) for p in PERCENTILES} | {"mean": float(lengths.mean())},
        "time": _span(times, data.time_unit),
        "repeat_consumption_rate": repeats / max(data.n_interactions, 1),
        "cleaning": cleaning,
        "item_features": dict(data.item_info.kinds) if data.item_info is not None else {},
        "user_features": dict(data.user_info.kinds) if data.user_info is not None else {},
    }


def describe_split(data: Interactions, split: Split) -> dict[str, Any]:
    """Sizes of the training part and of the cases; cold start; test cases earlier than the latest training
    interaction."""
    visible = split.train.visible
    train_users = np.zeros(data.n_users, dtype=bool)
    train_users[data.user_of[visible]] = True
    train_items = np.zeros(data.n_items + 1, dtype=bool)
    train_items[np.asarray(data.items)[visible]] = True
    times = np.asarray(data.timestamps)
    latest_training = int(times[visible].max()) if visible.any() else None
    test = split.test
    test_times = times[test.target_pos]
    before = int((test_times < latest_training).sum()) if latest_training is not None else 0
    return {
        "protocol": split.protocol,
        "training": {"interactions": int(visible.sum()), "users": int(train_users.sum()),
                     "items": int(train_items[: data.n_items].sum()), "targets": int(split.train.is_target.sum())},  # fmt: skip
        "validation": _cases(data, split.validation),
        "test": _cases(data, test),
        "cold_start": {
            "test_cases_with_an_item_unseen_in_training": _share(~train_items[test.targets(data)]),
            "test_users_without_training_interactions": _share(~train_users[np.unique(test.users)]),
        },
        "future_leak": {
            "latest_training_interaction": format_moment(latest_training, data.time_unit) if latest_training is not None else None,
            "test_cases_before_it": before,
            "share_of_test_cases": before / max(len(test), 1),
        },
    }


def _cases(data: Interactions, cases: EvalCases) -> dict[str, Any]:
    return {"cases": len(cases), "users": int(len(np.unique(cases.users))),
            "items": int(len(np.unique(cases.targets(data))))}  # fmt: skip


def _share(mask: np.ndarray) -> dict[str, Any]:
    return {"count": int(mask.sum()), "share": float(mask.mean()) if len(mask) else 0.0}


def _span(times: np.ndarray, unit: str) -> dict[str, Any]:
    if not len(times):
        return {}
    first, last = int(times.min()), int(times.max())
    seconds = (last - first) / (1000 if unit == "ms" else 1)
    return {"first": format_moment(first, unit), "last": format_moment(last, unit), "days": round(seconds / 86400, 1), "unit": unit}


def description_text(description: dict[str, Any]) -> str:
    """The description as aligned text for people."""
    d = description["dataset"]
    length, time = d["sequence_length"], d["time"]
    lines = [
        f"dataset        {d['source'].get('dataset', '?')}  {d['source'].get('path', '')}",
        f"users          {d['users']:,}",
        f"items          {d['items']:,} ({d['rated_items']:,} with interactions)",
        f"interactions   {d['interactions']:,}",
        f"density        {d['density']:.5f}",
        "sequence length " + "  ".join(f"{k} {v:g}" for k, v in length.items()),
        f"time span      {time.get('first', '-')} .. {time.get('last', '-')} ({time.get('days', 0)} days)",
        f"repeat rate    {d['repeat_consumption_rate']:.4f} (share of interactions with an item the user had before)",
    ]
    if d["item_features"] or d["user_features"]:
        features = [f"items: {', '.join(f'{c} ({k})' for c, k in d['item_features'].items())}" if d["item_features"] else "",
                    f"users: {', '.join(f'{c} ({k})' for c, k in d['user_features'].items())}" if d["user_features"] else ""]  # fmt: skip
        lines.append("features       " + "; ".join(f for f in features if f))
    cleaning = d["cleaning"]
    if cleaning.get("rows_read") is not None:
        lines.append(f"rows read      {cleaning['rows_read']:,}")
    for record in cleaning.get("filters", []):
        lines.append(f"  filter {record['filter']} = {record['setting']}: -{record['rows_removed']:,} rows, "
                     f"-{record['users_removed']:,} users, -{record['items_removed']:,} items")  # fmt: skip
    for what in ("unknown_items", "unknown_users"):
        if cleaning.get(what):
            u = cleaning[what]
            lines.append(f"  {what.replace('_', ' ')}: {u['rows']:,} rows name {u['ids']:,} ids the table lacks ({u['policy']})")
    if cleaning.get("duplicate_rows_dropped"):
        lines.append(f"  exact duplicate rows dropped: {cleaning['duplicate_rows_dropped']:,}")
    for name, s in description["splits"].items():
        train, cold, leak = s["training"], s["cold_start"], s["future_leak"]
        lines += [
            "",
            f"split {name}",
            f"  training     {train['interactions']:,} interactions, {train['users']:,} users, {train['items']:,} items",
            f"  validation   {s['validation']['cases']:,} cases, {s['validation']['users']:,} users",
            f"  test         {s['test']['cases']:,} cases, {s['test']['users']:,} users, {s['test']['items']:,} items",
            f"  cold start   {cold['test_cases_with_an_item_unseen_in_training']['share']:.2%} of test cases have an item "
            f"unseen in training; {cold['test_users_without_training_interactions']['share']:.2%} of test users "
            "have no training interaction",
            f"  future leak  {leak['test_cases_before_it']:,} test cases ({leak['share_of_test_cases']:.2%}) happen "
            f"before the latest training interaction ({leak['latest_training_interaction']})",
        ]
    return "\n".join(lines)
