"""Item and user tables: a key column naming the item (user) and declared feature columns, read into a
:class:`~recplug.api.FeatureTable` with a row per token."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import pandas as pd

from recplug.api import DataError, FeatureKind, FeatureTable

from .reading import FileFormat, file_format, integers_if_all_are, read_columns

UnknownPolicy = Literal["keep", "drop", "error"]


@attrs.frozen
class TableOptions:
    """``items = { path = "items.csv", key = "sku", features = { brand = "categorical", tags = "multi" } }``"""

    path: str = attrs.field(metadata={"doc": "The table's file (relative to the spec's folder).", "path": True})
    key: str = attrs.field(metadata={"doc": "The column holding the item (user) id, as in the event log."})
    features: dict[str, FeatureKind] = attrs.field(
        factory=dict,
        metadata={"doc": "Columns to read and their kind: categorical, multi (several values, in text separated "
                         "by multi_separator), numeric, or text (shown, never modelled)."},
    )
    format: FileFormat | None = attrs.field(default=None, metadata={"doc": "Default: from the file's suffix."})
    separator: str | None = attrs.field(default=None, metadata={"doc": "CSV field separator (default ',' / tab)."})
    multi_separator: str = attrs.field(default="|", metadata={"doc": "Separates the values of a multi column."})
    unknown: UnknownPolicy = attrs.field(
        default="keep",
        metadata={"doc": "Log rows whose id the table lacks: 'keep' them (their features are empty), 'drop' them, "
                         "or stop with an 'error'. Counted and recorded either way."},
    )
    all_rows: bool = attrs.field(
        default=False,
        metadata={"doc": "Give every row of the table a token, also ids the log never mentions (a catalogue of "
                         "items nobody has interacted with yet, as the MovieLens plugin does)."},
    )


def read_table(options: TableOptions, what: str) -> pd.DataFrame:
    """The key and feature columns of a table, indexed by id (integers when every id is one), features typed."""
    path = Path(options.path)
    columns = [options.key, *options.features]
    text_columns = [c for c, kind in options.features.items() if kind in ("categorical", "multi", "text")]
    table = read_columns(path, file_format(path, options.format), columns, separator=options.separator,
                         text=[options.key, *text_columns])  # fmt: skip
    keys = table.column(options.key).combine_chunks()
    if keys.null_count:
        row = int(np.argmax(keys.is_null().to_numpy(zero_copy_only=False)))
        raise DataError(f"a row has no {what} id (line {row + 2})", where=f"{path} column {options.key!r}")
    ids = integers_if_all_are(keys)
    frame = table.to_pandas()
    frame.index = pd.Index(ids if ids is not None else keys.to_numpy(zero_copy_only=False).astype(str), name=options.key)
    repeated = frame.index.duplicated()
    if repeated.any():
        row = int(np.argmax(repeated))
        raise DataError(f"the {what} id {frame.index[row]!r} appears twice (again on line {row + 2}); each {what} "
                        "needs one row", where=f"{path} column {options.key!r}")  # fmt: skip
    for column, kind in options.features.items():
        frame[column] = _typed(frame[column], kind, options.multi_separator, f"{path} column {column!r}")
    return frame[list(options.features)]


def _typed(values: pd.Series, kind: FeatureKind, separator: str, where: str) -> pd.Series:
    if kind == "numeric":
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna() & values.notna()
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise DataError(f"a numeric feature holds {values.iloc[row]!r} (line {row + 2}); declare it "
                            "categorical or text, or fix the value", where=where)  # fmt: skip
        return numbers.astype(np.float64)
    if kind == "multi":
        return pd.Series([[v for v in str(x).split(separator) if v] if isinstance(x, str) else
                          list(x) if isinstance(x, (list, tuple, np.ndarray)) else [] for x in values], index=values.index)  # fmt: skip
    return values.where(values.notna(), None)


def in_table(frame: pd.DataFrame, vocabulary: np.ndarray) -> np.ndarray:
    """For each id of ``vocabulary``, whether the table has a row for it."""
    frame, ids = _comparable(frame, vocabulary)
    return frame.index.get_indexer(ids) >= 0


def feature_table(frame: pd.DataFrame, options: TableOptions, vocabulary: np.ndarray) -> FeatureTable:
    """The table's features with a row per token of ``vocabulary`` (empty rows for ids it lacks)."""
    frame, ids = _comparable(frame, vocabulary)
    table = FeatureTable(frame, dict(options.features)).reindexed(ids)
    return table


def with_table_ids(vocabulary: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """The sorted union of ``vocabulary`` and the table's ids (``all_rows = true``)."""
    frame, ids = _comparable(frame, vocabulary)
    return np.unique(np.concatenate([ids, frame.index.to_numpy()]))


def _comparable(frame: pd.DataFrame, vocabulary: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The table and the vocabulary with ids of one type: text when either holds text ids."""
    text_table = not pd.api.types.is_integer_dtype(frame.index)
    if (vocabulary.dtype.kind in "iu") != text_table:
        return frame, vocabulary
    text = pd.Index(frame.index.astype(str), name=frame.index.name)
    return frame.set_axis(text, axis=0), vocabulary.astype(str)


def describe_unknown(n_rows: int, n_ids: int, what: str, policy: UnknownPolicy, path: str) -> dict[str, Any]:
    """The record of log rows whose id the table lacks (an error under ``unknown = "error"``)."""
    if n_rows and policy == "error":
        raise DataError(f"{n_rows} log rows name {n_ids} {what}s the {what} table lacks (set unknown = \"keep\" "
                        "or \"drop\")", where=path)  # fmt: skip
    return {"table": path, "rows": n_rows, "ids": n_ids, "policy": policy}
