"""Cleaning an event log before it becomes sequences: each filter keeps a subset of the rows and reports what it
removed (rows, users, items), so that the effect of every filter is logged and recorded with the results."""

from __future__ import annotations

import logging
from typing import Any, Literal

import attrs
import numpy as np

from recplug.api import DataError, parse_moment

log = logging.getLogger("recplug")

Duplicates = Literal["exact", "first", "last"]


def _moment_or_none(instance: object, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None:
        parse_moment(value, "s")


@attrs.frozen
class Filters:
    """Applied in this order: time window, rating threshold, duplicates, k-core, minimum sequence length."""

    start: str | None = attrs.field(
        default=None, validator=_moment_or_none, metadata={"doc": "Keep interactions from this moment (ISO 8601) on."}
    )
    end: str | None = attrs.field(
        default=None, validator=_moment_or_none, metadata={"doc": "Keep interactions before this moment (ISO 8601)."}
    )
    min_rating: float | None = attrs.field(
        default=None,
        metadata={"doc": "Keep interactions rated at least this (explicit ratings read as implicit feedback)."},
    )
    duplicates: Duplicates = attrs.field(
        default="exact",
        metadata={"doc": "'exact': drop rows repeating a (user, item, time) row; 'first' / 'last': keep only each "
                         "user's first / last interaction with an item (no repeat consumption)."},
    )
    user_core: int = attrs.field(
        default=0, validator=attrs.validators.ge(0),
        metadata={"doc": "Iterative k-core: every user keeps at least this many interactions (0: off)."},
    )  # fmt: skip
    item_core: int = attrs.field(
        default=0, validator=attrs.validators.ge(0),
        metadata={"doc": "Iterative k-core: every item keeps at least this many interactions (0: off)."},
    )  # fmt: skip
    min_sequence_length: int = attrs.field(
        default=0, validator=attrs.validators.ge(0),
        metadata={"doc": "Finally, drop users with fewer interactions (0: off)."},
    )  # fmt: skip

    def __attrs_post_init__(self) -> None:
        if self.start is not None and self.end is not None and parse_moment(self.start, "s") >= parse_moment(self.end, "s"):
            raise ValueError("start must be before end")


@attrs.define
class Rows:
    """Tokenised interaction rows (users and items index the vocabularies)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, keep: np.ndarray) -> Rows:
        return Rows(self.users[keep], self.items[keep], self.ratings[keep], self.timestamps[keep])

    def tokens(self, what: str) -> np.ndarray:
        """The ``user`` or ``item`` tokens."""
        return self.users if what == "user" else self.items

    def with_tokens(self, what: str, tokens: np.ndarray) -> Rows:
        """These rows with new ``user`` or ``item`` tokens."""
        if what == "user":
            return Rows(tokens, self.items, self.ratings, self.timestamps)
        return Rows(self.users, tokens, self.ratings, self.timestamps)


def clean(rows: Rows, filters: Filters, time_unit: str, n_users: int, n_items: int) -> tuple[Rows, list[dict[str, Any]]]:
    """The rows every filter keeps, and a record per filter that ran: its name and setting, and the rows,
    users and items it removed. An empty result is an error naming the filter that emptied it."""
    steps: list[tuple[str, Any, Any]] = []
    if filters.start is not None:
        start = parse_moment(filters.start, time_unit)
        steps.append(("start", filters.start, lambda r: r.timestamps >= start))
    if filters.end is not None:
        end = parse_moment(filters.end, time_unit)
        steps.append(("end", filters.end, lambda r: r.timestamps < end))
    if filters.min_rating is not None:
        threshold = np.float32(filters.min_rating)
        steps.append(("min_rating", filters.min_rating, lambda r: r.ratings >= threshold))
    if filters.duplicates != "exact":
        steps.append(("duplicates", filters.duplicates, lambda r: _one_per_pair(r, filters.duplicates, n_items)))
    if filters.user_core or filters.item_core:
        cores = {"users": filters.user_core, "items": filters.item_core}
        steps.append(("k_core", cores, lambda r: _k_core(r, filters.user_core, filters.item_core, n_users, n_items)))
    if filters.min_sequence_length:
        shortest = filters.min_sequence_length
        steps.append(("min_sequence_length", shortest,
                      lambda r: np.bincount(r.users, minlength=n_users)[r.users] >= shortest))  # fmt: skip
    records = []
    for name, setting, keep_of in steps:
        before = rows
        rows = rows.subset(keep_of(rows))
        record = {"filter": name, "setting": setting, "rows_removed": len(before) - len(rows),
                  "users_removed": _distinct(before.users, n_users) - _distinct(rows.users, n_users),
                  "items_removed": _distinct(before.items, n_items) - _distinct(rows.items, n_items)}  # fmt: skip
        log.info("filter %s = %s: removed %d rows, %d users, %d items", name, setting, record["rows_removed"],
                 record["users_removed"], record["items_removed"])  # fmt: skip
        records.append(record)
        if len(rows) == 0:
            raise DataError(f"no interaction is left after the filter {name} = {setting!r} (it removed the last "
                            f"{len(before)} rows)", where="dataset.events.filters")  # fmt: skip
    return rows, records


def _distinct(tokens: np.ndarray, size: int) -> int:
    return int(np.count_nonzero(np.bincount(tokens, minlength=size)))


def _one_per_pair(rows: Rows, keep: Duplicates, n_items: int) -> np.ndarray:
    """A mask keeping each (user, item) pair's earliest (``first``) or latest (``last``) row; ties in row order."""
    pairs = rows.users.astype(np.int64) * n_items + rows.items
    position = np.arange(len(rows))
    order = np.lexsort((position, rows.timestamps, pairs))
    boundary = np.ones(len(rows), dtype=bool)
    if keep == "first":
        boundary[1:] = pairs[order][1:] != pairs[order][:-1]
    else:
        boundary[:-1] = pairs[order][1:] != pairs[order][:-1]
    mask = np.zeros(len(rows), dtype=bool)
    mask[order[boundary]] = True
    return mask


def _k_core(rows: Rows, user_core: int, item_core: int, n_users: int, n_items: int) -> np.ndarray:
    """Iteratively drop users with fewer than ``user_core`` and items with fewer than ``item_core`` interactions
    until none is left to drop."""
    keep = np.ones(len(rows), dtype=bool)
    while True:
        users, items = rows.users[keep], rows.items[keep]
        weak_users = np.bincount(users, minlength=n_users) < user_core
        weak_items = np.bincount(items, minlength=n_items) < item_core
        drop = weak_users[users] | weak_items[items]
        if not drop.any():
            return keep
        keep[np.flatnonzero(keep)[drop]] = False
