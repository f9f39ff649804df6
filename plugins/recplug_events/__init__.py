"""Your own interaction log as a dataset: ``[dataset.events]`` reads a CSV, TSV, Parquet or JSON-lines file of
(user, item, time[, rating]) rows, optional item and user tables with declared features, cleans it with the
spec's filters and builds time-ordered sequences. Raw ids, integers or text, are kept.

::

    [dataset.events]
    path = "data/clicks.parquet"
    columns = { user = "visitor", item = "sku", time = "ts", rating = "stars" }
    time_unit = "ms"
    items = { path = "data/items.csv", key = "sku", features = { brand = "categorical", tags = "multi" } }
    filters = { min_rating = 4, user_core = 5, item_core = 5 }

Needs pyarrow (``pip install 'recplug[parquet]'``).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from recplug.api import (
    DataError,
    Dataset,
    FeatureTable,
    Interactions,
    RunContext,
    cache_dir,
    file_sha256,
    hookimpl,
    interactions_from_tokens,
    load_interactions,
    save_interactions,
)

from .cleaning import Filters, Rows, clean
from .reading import (
    FileFormat,
    TimeUnit,
    file_format,
    numbers,
    read_columns,
    release_arrow_memory,
    timestamps,
    tokenise,
)
from .tables import TableOptions, describe_unknown, feature_table, in_table, read_table, with_table_ids

CACHE_VERSION = 1
"""Bumped when what the plugin builds from the same files and options changes."""


@attrs.frozen
class Columns:
    """Which columns of the log hold what."""

    user: str = attrs.field(default="user", metadata={"doc": "The user id column."})
    item: str = attrs.field(default="item", metadata={"doc": "The item id column."})
    time: str = attrs.field(default="time", metadata={"doc": "The time column (see time_unit)."})
    rating: str | None = attrs.field(default=None, metadata={"doc": "The rating column; without one every rating is 1."})


def _one_character(instance: object, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and len(value) != 1:
        raise ValueError(f"'{attribute.name}' must be one character, got {value!r} (pyarrow reads single-character "
                         "separators; for MovieLens-1M's '::' files use the movielens dataset)")  # fmt: skip


@attrs.frozen
class EventsOptions:
    path: str = attrs.field(metadata={"doc": "The event log (relative to the spec's folder).", "path": True})
    columns: Columns = attrs.field(factory=Columns, metadata={"doc": "Which columns hold the user, item, time, rating."})
    time_unit: TimeUnit = attrs.field(
        default="s",
        metadata={"doc": "'s' or 'ms': the time column holds numbers (e.g. Unix seconds); 'iso': ISO 8601 text "
                         "or date/time values, kept as milliseconds."},
    )
    format: FileFormat | None = attrs.field(default=None, metadata={"doc": "csv, tsv, parquet or jsonl; default: from the suffix."})
    separator: str | None = attrs.field(
        default=None, validator=_one_character, metadata={"doc": "CSV field separator (default ',' for csv, tab for tsv)."}
    )
    names: list[str] = attrs.field(
        factory=list, metadata={"doc": "Column names of a CSV file without a header row (e.g. ml-100k's u.data)."}
    )
    items: TableOptions | None = attrs.field(default=None, metadata={"doc": "An item table with features."})
    users: TableOptions | None = attrs.field(default=None, metadata={"doc": "A user table with features."})
    filters: Filters = attrs.field(factory=Filters, metadata={"doc": "Cleaning, applied before the sequences are built."})
    cache: bool = attrs.field(
        default=True,
        metadata={"doc": "Keep the built sequences in the recplug cache, keyed by these options and the path, size "
                         "and modification time of every file read, and memory-map them on later loads."},
    )


class Events(Dataset):
    """An interaction log of your own (CSV, TSV, Parquet, JSON lines), with optional item and user tables."""

    options: EventsOptions

    def load(self, context: RunContext) -> Interactions:
        if not self.options.cache:
            return self.parse()
        folder = cache_dir() / "parsed" / f"events-{self.cache_key()}"
        if (data := load_interactions(folder)) is not None:
            return data
        data = self.parse()
        save_interactions(data, folder)
        return data

    def files(self) -> list[Path]:
        """Every file this dataset reads."""
        tables = [t for t in (self.options.items, self.options.users) if t is not None]
        return [Path(self.options.path), *(Path(t.path) for t in tables)]

    def cache_key(self) -> str:
        """sha256 of the options and of each file's resolved path, size and modification time."""
        stats = []
        for path in self.files():
            try:
                stat = path.stat()
            except OSError:
                raise DataError("file not found", where=str(path)) from None
            stats.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
        options = attrs.asdict(self.options, recurse=True)
        return hashlib.sha256(json.dumps([CACHE_VERSION, options, stats], sort_keys=True).encode()).hexdigest()

    def parse(self) -> Interactions:
        """Read, tokenise, clean and order the log (no cache)."""
        o = self.options
        path = Path(o.path)
        fmt = file_format(path, o.format)
        c = o.columns
        wanted = list(dict.fromkeys([c.user, c.item, c.time, *([c.rating] if c.rating else [])]))
        where = lambda column: f"{path} column {column!r}"  # noqa: E731
        table = read_columns(path, fmt, wanted, separator=o.separator, names=o.names or None,
                             text=[c.user, c.item, *([c.time] if o.time_unit == "iso" else [])])  # fmt: skip
        release_arrow_memory()  # the reader's buffers: without this, its transient peak stays resident
        with ThreadPoolExecutor(max_workers=2) as pool:  # pyarrow, numpy and hashlib release the GIL
            times, unit = timestamps(table.column(c.time), o.time_unit, where(c.time))
            ratings = (numbers(table.column(c.rating), "rating", where(c.rating)) if c.rating
                       else np.ones(len(table), dtype=np.float32))  # fmt: skip
            (user_ids, users), (item_ids, items) = tokenise(
                [(table.column(c.user), "user", where(c.user)), (table.column(c.item), "item", where(c.item))], pool
            )
            del table
            release_arrow_memory()
            hashes = pool.submit(lambda: [file_sha256(p) for p in self.files()])  # beside the one-core work below
            rows = Rows(users, items, ratings, times)
            source: dict[str, Any] = {"dataset": "events", "path": str(path), "format": fmt, "time_unit": unit,
                                      "rows_read": len(rows)}  # fmt: skip
            rows, item_ids, item_info, source["unknown_items"] = self._with_table(o.items, "item", rows, item_ids)
            rows, user_ids, user_info, source["unknown_users"] = self._with_table(o.users, "user", rows, user_ids)
            rows, source["filters"] = clean(rows, o.filters, unit, len(user_ids), len(item_ids))
            if len(rows) < source["rows_read"]:  # ids no row mentions any more leave the vocabularies
                rows, user_ids, user_info = _compact(rows, user_ids, user_info, "user", o.users)
                rows, item_ids, item_info = _compact(rows, item_ids, item_info, "item", o.items)
            data = interactions_from_tokens(
                rows.users, rows.items, rows.ratings, rows.timestamps, user_ids=user_ids, item_ids=item_ids,
                fingerprint="", item_info=item_info, user_info=user_info, source=source,
            )  # fmt: skip
            options = json.dumps(attrs.asdict(o, recurse=True, filter=lambda a, v: a.name not in ("path", "cache")),
                                 sort_keys=True)  # fmt: skip
            fingerprint = hashlib.sha256((options + "".join(hashes.result())).encode()).hexdigest()
        return attrs.evolve(data, fingerprint=fingerprint)

    def _with_table(
        self, options: TableOptions | None, what: str, rows: Rows, vocabulary: np.ndarray
    ) -> tuple[Rows, np.ndarray, FeatureTable | None, dict[str, Any] | None]:
        """Read a metadata table; apply its policy to log rows whose id it lacks; with ``all_rows`` add its ids to
        the vocabulary. Returns the rows, the vocabulary, the features (a row per token) and the record."""
        if options is None:
            return rows, vocabulary, None, None
        frame = read_table(options, what)
        known = in_table(frame, vocabulary)
        unknown_rows = ~known[rows.tokens(what)]
        record = describe_unknown(int(unknown_rows.sum()), int((~known).sum()), what, options.unknown, options.path)
        if options.unknown == "drop" and record["rows"]:
            rows = rows.subset(~unknown_rows)
        if options.all_rows:
            extended = with_table_ids(vocabulary, frame)
            remap = np.searchsorted(extended, vocabulary.astype(extended.dtype)).astype(np.int32)
            rows = rows.with_tokens(what, remap[rows.tokens(what)])
            vocabulary = extended
        return rows, vocabulary, feature_table(frame, options, vocabulary), record


def _compact(
    rows: Rows, vocabulary: np.ndarray, info: FeatureTable | None, what: str, table: TableOptions | None
) -> tuple[Rows, np.ndarray, FeatureTable | None]:
    """Drop the ``user`` (``item``) ids no row mentions any more, unless the table keeps ``all_rows``, and renumber
    the tokens."""
    tokens = rows.tokens(what)
    used = np.bincount(tokens, minlength=len(vocabulary)) > 0
    if (table is not None and table.all_rows) or used.all():
        return rows, vocabulary, info
    new_token = np.cumsum(used, dtype=np.int32) - 1
    rows = rows.with_tokens(what, new_token[tokens])
    if info is not None:
        info = FeatureTable(info.frame.iloc[np.flatnonzero(used)].reset_index(drop=True), dict(info.kinds))
    return rows, vocabulary[used], info


@hookimpl
def register_components(register) -> None:
    register.dataset("events", Events, EventsOptions)
