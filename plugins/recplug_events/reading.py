"""Reading an event log or a metadata table with pyarrow: CSV/TSV, Parquet and JSON lines, only the columns named.

Id columns are read as text (so that ``007`` stays ``007``) and dictionary-encoded, the user and the item column
on a core each; the tokens are then the sorted dictionary's ranks. Every problem is one :class:`DataError`
naming the file and the column, row or line.
"""

from __future__ import annotations

import difflib
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recplug.api import DataError

FileFormat = Literal["csv", "tsv", "parquet", "jsonl"]
SUFFIXES: dict[str, FileFormat] = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
                                   ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}  # fmt: skip
BLOCK_SIZE = 16 << 20
"""CSV bytes per parsed block (pyarrow's default is 1 MB): measured fastest on a 25M-row log."""


def pyarrow_modules() -> Any:
    """pyarrow, or the error that says how to install it."""
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv
        import pyarrow.json
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataError("the events dataset reads files with pyarrow: pip install 'recplug[parquet]'") from None
    return pyarrow


def file_format(path: Path, given: FileFormat | None) -> FileFormat:
    """The format named in the spec, else the one the file's suffix says (``.csv.gz`` counts as ``.csv``)."""
    if given is not None:
        return given
    suffixes = [s for s in path.suffixes if s not in (".gz", ".bz2", ".zst", ".lz4")]
    if suffixes and suffixes[-1].lower() in SUFFIXES:
        return SUFFIXES[suffixes[-1].lower()]
    raise DataError(f"cannot tell the format from the suffix {path.suffix!r}: set format to one of "
                    "csv, tsv, parquet, jsonl", where=str(path))  # fmt: skip


def read_columns(
    path: Path,
    fmt: FileFormat,
    columns: list[str],
    *,
    separator: str | None = None,
    names: list[str] | None = None,
    text: list[str] = (),  # type: ignore[assignment]
) -> Any:
    """A pyarrow Table of ``columns`` from ``path``; in a CSV file, the ``text`` columns are read as strings (no
    type guessing). ``names`` name the columns of a CSV file without a header row."""
    pa = pyarrow_modules()
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a file", where=str(path))
    available = file_columns(path, fmt, separator, names)
    missing = [c for c in columns if c not in available]
    if missing:
        hint = difflib.get_close_matches(missing[0], available, n=1)
        raise DataError(f"no column {missing[0]!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; the file has: "
                        f"{', '.join(available)}", where=str(path))  # fmt: skip
    try:
        if fmt in ("csv", "tsv"):
            types = {c: pa.string() for c in text}
            return pa.csv.read_csv(
                path,
                read_options=pa.csv.ReadOptions(block_size=BLOCK_SIZE, column_names=names or None),
                parse_options=pa.csv.ParseOptions(delimiter=_delimiter(fmt, separator)),
                convert_options=pa.csv.ConvertOptions(include_columns=columns, column_types=types,
                                                      strings_can_be_null=True),
            )
        if fmt == "parquet":
            return pa.parquet.read_table(path, columns=columns)
        table = pa.json.read_json(path)
        return table.select(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as exc:
        raise DataError(f"cannot read the {fmt.upper()} file: {_arrow_message(exc)}", where=str(path)) from None


def file_columns(path: Path, fmt: FileFormat, separator: str | None, names: list[str] | None) -> list[str]:
    """The column names in the file (its header, the Parquet schema, or ``names``)."""
    pa = pyarrow_modules()
    if names:
        return list(names)
    try:
        if fmt == "parquet":
            return list(pa.parquet.read_schema(path).names)
        if fmt == "jsonl":
            with pa.json.open_json(path) as reader:
                return list(reader.schema.names)
        with pa.csv.open_csv(path, parse_options=pa.csv.ParseOptions(delimiter=_delimiter(fmt, separator)),
                             read_options=pa.csv.ReadOptions(block_size=1 << 20)) as reader:  # fmt: skip
            return list(reader.schema.names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read the {fmt.upper()} file: {_arrow_message(exc)}", where=str(path)) from None


def _delimiter(fmt: FileFormat, separator: str | None) -> str:
    return separator if separator is not None else ("\t" if fmt == "tsv" else ",")


def _arrow_message(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def tokenise(columns: list[tuple[Any, str, str]], pool: Executor) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(vocabulary, tokens)`` of each ``(column, what, where)`` id column: the distinct ids sorted (int64, or a
    numpy text array; a column whose every id is a plain integer is read as integers) and each row's index into
    them (int32). Text is hashed in halves of each column, all halves at once on ``pool``'s threads."""
    pa = pyarrow_modules()
    for column, what, where in columns:
        _no_missing(column, f"{what} id", where)
        if not (pa.types.is_integer(column.type) or pa.types.is_string(column.type)
                or pa.types.is_large_string(column.type) or pa.types.is_dictionary(column.type)):  # fmt: skip
            raise DataError(f"{what} ids must be integers or text, not {column.type}", where=where)
    encoded = [[pool.submit(_encoded, half) for half in _halves(column)] for column, _, _ in columns]
    return [_tokens(*_merged([part.result() for part in parts])) for parts in encoded]


def _halves(column: Any) -> list[Any]:
    """The chunks of a text column in two halves (hashed in parallel); any other column whole."""
    pa = pyarrow_modules()
    if column.num_chunks < 2 or not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return [column]
    middle = column.num_chunks // 2
    return [pa.chunked_array(column.chunks[:middle], column.type), pa.chunked_array(column.chunks[middle:], column.type)]


def _encoded(column: Any) -> tuple[np.ndarray, Any]:
    """``(indices, dictionary)``: int64 row values with no dictionary (small non-negative integers, which need no
    hashing), else int32 indices into the column's distinct values."""
    pa = pyarrow_modules()
    if pa.types.is_integer(column.type):
        values = column.to_numpy()
        if not len(values) or (values.min() >= 0 and values.max() < 50_000_000):
            return values.astype(np.int64, copy=False), None
    if pa.types.is_dictionary(column.type):
        column = column.unify_dictionaries()  # (a Parquet file's dictionaries differ from row group to row group)
    else:
        column = column.dictionary_encode()  # one hash table for all chunks: every chunk has its whole dictionary
    if column.num_chunks == 0:
        return np.zeros(0, dtype=np.int32), pa.array([], pa.string())
    indices = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in column.chunks])
    return indices.astype(np.int32, copy=False), column.chunk(column.num_chunks - 1).dictionary


def _merged(parts: list[tuple[np.ndarray, Any]]) -> tuple[np.ndarray, Any]:
    """One ``(indices, dictionary)`` of a column encoded in parts (the parts' dictionaries unified)."""
    if len(parts) == 1:
        return parts[0]
    pa = pyarrow_modules()
    arrays = [pa.DictionaryArray.from_arrays(pa.array(indices), dictionary) for indices, dictionary in parts]
    unified = pa.chunked_array(arrays).unify_dictionaries()
    indices = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in unified.chunks])
    return indices.astype(np.int32, copy=False), unified.chunk(0).dictionary


def _tokens(indices: np.ndarray, dictionary: Any) -> tuple[np.ndarray, np.ndarray]:
    """The sorted vocabulary and the tokens of encoded rows (``dictionary`` None: the rows are the ids)."""
    if dictionary is None:  # small non-negative integer ids: a lookup table
        present = np.zeros(int(indices.max(initial=-1)) + 1, dtype=bool)
        present[indices] = True
        token_of = np.cumsum(present, dtype=np.int32) - 1
        return np.flatnonzero(present).astype(np.int64), token_of[indices]
    values = integers_if_all_are(dictionary)
    if values is None:
        values = np.asarray(dictionary.to_numpy(zero_copy_only=False)).astype(str)
    order = np.argsort(values, kind="stable")
    rank = np.empty(len(values), dtype=np.int32)
    rank[order] = np.arange(len(values), dtype=np.int32)
    return values[order], rank[indices]


def integers_if_all_are(ids: Any) -> np.ndarray | None:
    """A pyarrow array of ids as int64 when every one is an integer written plainly (``"7"``, not ``"007"`` or
    ``"+7"``: those stay text), else None."""
    pa = pyarrow_modules()
    if pa.types.is_integer(ids.type):
        return ids.to_numpy().astype(np.int64)
    try:
        pa.compute.cast(ids[:100], pa.int64())  # text ids fail here, at once
        numbers = pa.compute.cast(ids, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if not pa.compute.all(pa.compute.equal(pa.compute.cast(numbers, pa.string()), ids)).as_py():
        return None
    return numbers.to_numpy()


def _no_missing(column: Any, what: str, where: str) -> None:
    if column.null_count:
        row = _first_true(column.is_null())
        raise DataError(f"{column.null_count} rows have no {what} (first: row {row + 1} of the data)", where=where)


def _first_true(mask: Any) -> int:
    return int(np.argmax(mask.to_numpy(zero_copy_only=False)))


TimeUnit = Literal["s", "ms", "iso"]


def timestamps(column: Any, unit: TimeUnit, where: str) -> tuple[np.ndarray, str]:
    """int64 timestamps and their unit (``s`` or ``ms``): numbers as they are (rounded), ISO 8601 text or
    timestamp columns as milliseconds since the Unix epoch (UTC)."""
    pa = pyarrow_modules()
    pc = pa.compute
    _no_missing(column, "time", where)
    if unit in ("s", "ms"):
        if pa.types.is_integer(column.type):
            return column.to_numpy().astype(np.int64, copy=False), unit
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            raise DataError("the time column holds dates or times, not numbers: set time_unit = \"iso\"", where=where)
        numbers = _numbers(column, "time", where)
        return np.round(numbers).astype(np.int64), unit
    if pa.types.is_date(column.type):
        column = pc.cast(column, pa.date32())
        days = column.cast(pa.int32()).to_numpy().astype(np.int64)
        return days * 86_400_000, "ms"
    if pa.types.is_timestamp(column.type):
        if column.type.tz is not None:
            column = pc.cast(column, pa.timestamp(column.type.unit, tz="UTC"))
        return pc.cast(column, pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64()).to_numpy(), "ms"
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise DataError(f"time_unit = \"iso\" needs ISO 8601 text, but the time column holds {column.type}", where=where)
    import pandas as pd

    parsed = pd.to_datetime(column.to_pandas(), errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{int(bad.sum())} times are not ISO 8601 (first: {column[row].as_py()!r} in row {row + 1} "
                        "of the data); use time_unit = \"s\" or \"ms\" for numbers", where=where)  # fmt: skip
    return parsed.to_numpy("datetime64[ms]").astype(np.int64), "ms"


def numbers(column: Any, what: str, where: str) -> np.ndarray:
    """float32 values of a column that must hold numbers (missing values are refused)."""
    _no_missing(column, what, where)
    return _numbers(column, what, where).astype(np.float32, copy=False)


def release_arrow_memory() -> None:
    """Hand the memory pyarrow's pool keeps for reuse back to the system (the decoded log is no longer needed)."""
    pa = pyarrow_modules()
    pool = pa.default_memory_pool()
    if hasattr(pool, "release_unused"):
        pool.release_unused()


def _numbers(column: Any, what: str, where: str) -> np.ndarray:
    """The values of a column of numbers or of text holding numbers; NaN, infinities and other text are refused,
    naming the first."""
    pa = pyarrow_modules()
    if pa.types.is_integer(column.type):
        return column.to_numpy()
    if pa.types.is_floating(column.type):
        values = column.to_numpy()
    else:
        import pandas as pd

        values = pd.to_numeric(column.to_pandas(), errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{int(bad.sum())} {what} values are not numbers (first: {column[row].as_py()!r} in row "
                        f"{row + 1} of the data)", where=where)  # fmt: skip
    return values
