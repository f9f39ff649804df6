"""The events dataset: a user's own log (CSV, TSV, Parquet, JSON lines) with item and user tables, cleaning
filters, string ids end to end, and one clear error for each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli
from recplug._components import RunContext
from recplug._config import structure
from recplug._data import build_interactions, user_time_order
from recplug._errors import DataError
from recplug_events import Events, EventsOptions

pytest.importorskip("pyarrow")

COLUMNS = {"user": "visitor", "item": "sku", "time": "ts", "rating": "stars"}


def write_log(folder: Path, n_users: int = 30, n_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """clicks.csv (string ids, millisecond times, file order shuffled), items.csv and users.csv."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for t in sorted(rng.choice(10_000, size=int(rng.integers(4, 15)), replace=False)):
            rows.append((f"v{u:03d}", f"sku-{int(rng.integers(0, n_items))}", 1_700_000_000_000 + int(t) * 1000,
                         int(rng.integers(1, 6))))  # fmt: skip
    log = pd.DataFrame(rows, columns=["visitor", "sku", "ts", "stars"]).sample(frac=1.0, random_state=seed)
    folder.mkdir(parents=True, exist_ok=True)
    log.to_csv(folder / "clicks.csv", index=False)
    items = pd.DataFrame({"sku": [f"sku-{i}" for i in range(n_items)], "brand": [f"b{i % 4}" for i in range(n_items)],
                          "tags": ["|".join(["red", "blue", "green"][: 1 + i % 3]) for i in range(n_items)],
                          "price": [1.5 * i for i in range(n_items)], "name": [f"Item {i}" for i in range(n_items)]})  # fmt: skip
    items.to_csv(folder / "items.csv", index=False)
    pd.DataFrame({"visitor": [f"v{u:03d}" for u in range(n_users)], "country": ["FR", "DE", "JP"] * (n_users // 3),
                  "household": [1 + u % 4 for u in range(n_users)]}).to_csv(folder / "users.csv", index=False)  # fmt: skip
    return log


def events(folder: Path, **options) -> Events:
    table = {"path": str(folder / "clicks.csv"), "columns": COLUMNS, "time_unit": "ms", "cache": False, **options}
    return Events(structure(table, EventsOptions, "dataset.events"))


def test_a_csv_log_with_string_ids_becomes_time_ordered_sequences(tmp_path: Path) -> None:
    log = write_log(tmp_path)
    data = events(tmp_path).load(RunContext())
    assert data.user_ids.dtype.kind == "U" and data.user_ids.tolist() == sorted(set(log.visitor))
    assert data.n_interactions == len(log) and data.time_unit == "ms"
    for token, visitor in enumerate(data.user_ids):
        expected = log[log.visitor == visitor].sort_values("ts")
        assert data.item_ids[data.sequence(token)].tolist() == expected.sku.tolist()
        assert data.timestamps[data.offsets[token]:data.offsets[token + 1]].tolist() == expected.ts.tolist()
    reference = build_interactions(log.visitor.to_numpy(str), log.sku.to_numpy(str), log.stars, log.ts, fingerprint="-")
    assert np.array_equal(data.items, reference.items) and np.array_equal(data.ratings, reference.ratings)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "tsv"])
def test_every_format_reads_the_same_interactions(tmp_path: Path, fmt: str) -> None:
    log = write_log(tmp_path)
    path = tmp_path / f"clicks.{fmt}"
    if fmt == "parquet":
        log.to_parquet(path, index=False)
    elif fmt == "jsonl":
        log.to_json(path, orient="records", lines=True)
    else:
        log.to_csv(path, sep="\t", index=False)
    csv = events(tmp_path).load(RunContext())
    other = events(tmp_path, path=str(path)).load(RunContext())
    for name in ("user_ids", "item_ids", "offsets", "items", "ratings", "timestamps"):
        assert np.array_equal(getattr(csv, name), getattr(other, name)), name


def test_iso_times_integer_ids_and_a_file_without_header(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("7;3;2024-01-02T10:00:00Z\n7;1;2024-01-01\n2;3;2024-01-03T00:00:00+01:00\n")
    options = {"path": str(tmp_path / "log.csv"), "separator": ";", "names": ["u", "i", "when"],
               "columns": {"user": "u", "item": "i", "time": "when"}, "time_unit": "iso", "cache": False}  # fmt: skip
    data = Events(structure(options, EventsOptions, "x")).load(RunContext())
    assert data.user_ids.tolist() == [2, 7] and data.item_ids.dtype == np.int64
    assert data.item_ids[data.sequence(1)].tolist() == [1, 3]  # by time, not file order
    assert data.timestamps[0] == pd.Timestamp("2024-01-02T23:00:00Z").value // 1_000_000 and data.time_unit == "ms"
    assert data.ratings.tolist() == [1.0, 1.0, 1.0]  # no rating column: implicit feedback


def test_item_and_user_tables_give_features_of_every_declared_kind(tmp_path: Path) -> None:
    write_log(tmp_path)
    data = events(
        tmp_path,
        items={"path": str(tmp_path / "items.csv"), "key": "sku",
               "features": {"brand": "categorical", "tags": "multi", "price": "numeric", "name": "text"}},
        users={"path": str(tmp_path / "users.csv"), "key": "visitor",
               "features": {"country": "categorical", "household": "numeric"}},
    ).load(RunContext())  # fmt: skip
    info = data.item_info
    token = int(np.searchsorted(data.item_ids, "sku-5"))
    assert info.record(token) == {"brand": "b1", "tags": ["red", "blue", "green"], "price": 7.5, "name": "Item 5"}
    assert data.user_info.record(int(np.searchsorted(data.user_ids, "v004"))) == {"country": "DE", "household": 1}
    from recplug_transformer import item_feature, user_categories, user_codes

    assert item_feature(data, "tags").shape == (data.n_items + 1, 3)  # any declared multi column is a tower input
    assert item_feature(data, "price").shape == (data.n_items + 1, 1)
    categories = user_categories(data, ["country", "household"])  # a numeric column with few values embeds too
    assert categories == {"country": ["DE", "FR", "JP"], "household": ["1", "2", "3", "4"]}
    assert user_codes(data, categories)[4].tolist() == [0, 0]  # v004: DE, household 1


def test_filters_run_in_order_and_record_what_they_removed(tmp_path: Path) -> None:
    log = write_log(tmp_path)
    data = events(tmp_path, filters={"min_rating": 3, "user_core": 3, "item_core": 3}).load(RunContext())
    kept = log[log.stars >= 3]
    while True:  # the k-core, computed the slow and obvious way
        users, items = kept.visitor.value_counts(), kept.sku.value_counts()
        smaller = kept[kept.visitor.map(users).ge(3) & kept.sku.map(items).ge(3)]
        if len(smaller) == len(kept):
            break
        kept = smaller
    assert data.n_interactions == len(kept) and data.n_users == kept.visitor.nunique()
    assert data.n_items == kept.sku.nunique()
    records = data.source["filters"]
    assert [r["filter"] for r in records] == ["min_rating", "k_core"]
    assert records[0]["rows_removed"] == int((log.stars < 3).sum())
    assert sum(r["rows_removed"] for r in records) == len(log) - len(kept)


def test_duplicates_time_window_and_minimum_length(tmp_path: Path) -> None:
    rows = "u,i,t\na,x,1\na,y,2\na,x,3\na,x,3\nb,x,5\nb,y,6\nc,y,9\n"
    (tmp_path / "log.csv").write_text(rows)
    base = {"path": str(tmp_path / "log.csv"), "columns": {"user": "u", "item": "i", "time": "t"}, "cache": False}

    def load(**filters):
        return Events(structure({**base, "filters": filters}, EventsOptions, "x")).load(RunContext())

    exact = load()
    assert exact.n_interactions == 6 and exact.source["duplicate_rows_dropped"] == 1  # a,x,3 twice
    first, last = load(duplicates="first"), load(duplicates="last")
    assert first.timestamps[: first.offsets[1]].tolist() == [1, 2] and last.timestamps[: last.offsets[1]].tolist() == [2, 3]
    window = load(start="1970-01-01T00:00:02", end="1970-01-01T00:00:09")
    assert window.timestamps.tolist() == [2, 3, 5, 6] and window.user_ids.tolist() == ["a", "b"]
    assert window.source["filters"][1] == {"filter": "end", "setting": "1970-01-01T00:00:09", "rows_removed": 1,
                                          "users_removed": 1, "items_removed": 0}  # fmt: skip
    assert load(min_sequence_length=2).user_ids.tolist() == ["a", "b"]
    with pytest.raises(DataError, match="after the filter user_core|after the filter k_core"):
        load(user_core=10)


def test_user_time_order_matches_lexsort_and_repeats_are_found() -> None:
    rng = np.random.default_rng(3)
    for n, users, span, in_time_order in ((2_000, 7, 50, False), (5_000, 300, 2**40, False),
                                          (3_000, 2**20, 2**40, False), (3_000, 2**20, 2**40, True)):  # fmt: skip
        user, time = rng.integers(0, users, n), rng.integers(0, span, n)
        time = np.sort(time) if in_time_order else time  # (an event log as written: one sort by user suffices)
        assert np.array_equal(user_time_order(user, time), np.lexsort((np.arange(n), time, user)))
    user, time = np.sort(rng.integers(0, 300, 5_000)), rng.integers(0, 50, 5_000)  # grouped by user, as ML-1M is
    assert np.array_equal(user_time_order(user, time), np.lexsort((np.arange(5_000), time, user)))
    data = build_interactions([0, 0, 0, 0, 1], [5, 6, 5, 5, 5], [1, 2, 3, 4, 5], [1, 1, 1, 2, 1], fingerprint="d")
    assert data.items.tolist() == [0, 1, 0, 0] and data.ratings.tolist() == [1, 2, 4, 5]  # the first of (0, 5, 1) kept
    assert data.source["duplicate_rows_dropped"] == 1


BAD = [
    ("a misspelt column", {"columns": {**COLUMNS, "time": "tss"}}, None, "no column 'tss' (did you mean 'ts'?); the file has: visitor, sku, ts, stars"),
    ("times that are not ISO", {"time_unit": "iso"}, None, "times are not ISO 8601 (first: '"),
    ("text in a numeric time", {}, "visitor,sku,ts,stars\nv1,s1,yesterday,3\n", "time values are not numbers (first: 'yesterday' in row 1"),
    ("a missing id", {}, "visitor,sku,ts,stars\nv1,,5,3\n", "rows have no item id (first: row 1"),
    ("a wrong field count", {}, "visitor,sku,ts,stars\nv1,s1,5\n", "cannot read the CSV file: CSV parse error"),
    ("an empty log after filtering", {"filters": {"min_rating": 9}}, None, "no interaction is left after the filter min_rating = 9"),
    ("a numeric feature holding text", {"items": {"path": "items.csv", "key": "sku", "features": {"name": "numeric"}}}, None,
     "a numeric feature holds 'Item 0' (line 2)"),
    ("a repeated item key", {"items": {"path": "dup.csv", "key": "sku"}}, None, "the item id 'sku-1' appears twice (again on line 3)"),
    ("unknown items under 'error'", {"items": {"path": "few.csv", "key": "sku", "unknown": "error"}}, None,
     "log rows name 38 items the item table lacks"),
    ("a missing file", {"path": "nowhere.csv"}, None, "file not found"),
]  # fmt: skip


@pytest.mark.parametrize("what, options, text, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_clear_error(tmp_path: Path, what: str, options: dict, text: str | None, message: str) -> None:
    write_log(tmp_path)
    (tmp_path / "dup.csv").write_text("sku\nsku-1\nsku-1\n")
    (tmp_path / "few.csv").write_text("sku\nsku-1\nsku-2\n")
    if text is not None:
        (tmp_path / "clicks.csv").write_text(text)
    for table in ("items", "users"):
        if table in options:
            options = {**options, table: {**options[table], "path": str(tmp_path / options[table]["path"])}}
    if "path" in options:
        options = {**options, "path": str(tmp_path / options["path"])}
    with pytest.raises(DataError) as caught:
        events(tmp_path, **options).load(RunContext())
    assert message in str(caught.value)


def test_unknown_items_are_kept_or_dropped_and_counted(tmp_path: Path) -> None:
    log = write_log(tmp_path)
    (tmp_path / "few.csv").write_text("sku,brand\nsku-1,a\nsku-2,b\n")
    table = {"path": str(tmp_path / "few.csv"), "key": "sku", "features": {"brand": "categorical"}}
    kept = events(tmp_path, items=table).load(RunContext())
    assert kept.n_interactions == len(log)
    assert kept.source["unknown_items"]["rows"] == int((~log.sku.isin(["sku-1", "sku-2"])).sum())
    assert kept.item_info.record(int(np.searchsorted(kept.item_ids, "sku-3"))) == {"brand": None}
    dropped = events(tmp_path, items={**table, "unknown": "drop"}).load(RunContext())
    assert set(dropped.item_ids) == {"sku-1", "sku-2"} & set(log.sku)


def test_the_cache_is_keyed_by_the_files_and_the_options(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RECPLUG_CACHE_DIR", str(tmp_path / "cache"))
    log = write_log(tmp_path)
    first = events(tmp_path, cache=True).load(RunContext())
    again = events(tmp_path, cache=True).load(RunContext())
    assert isinstance(again.items, np.memmap) and np.array_equal(first.items, again.items)
    assert again.user_ids.tolist() == first.user_ids.tolist() and again.fingerprint == first.fingerprint
    filtered = events(tmp_path, cache=True, filters={"min_rating": 4}).load(RunContext())
    assert filtered.n_interactions < first.n_interactions and filtered.fingerprint != first.fingerprint
    log.iloc[:-1].to_csv(tmp_path / "clicks.csv", index=False)  # an edited log is parsed again
    assert events(tmp_path, cache=True).load(RunContext()).n_interactions == len(log) - 1


def test_a_spec_reads_relative_paths_and_the_cli_reports_bad_data_in_one_line(tmp_path: Path) -> None:
    write_log(tmp_path / "data")
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
[experiment]
name = "mine"
registry = "{tmp_path / 'registry'}"
output_dir = "{tmp_path / 'runs'}"
[dataset.events]
path = "data/clicks.csv"
columns = {{ user = "visitor", item = "sku", time = "ts", rating = "stars" }}
time_unit = "ms"
items = {{ path = "data/items.csv", key = "sku", features = {{ brand = "categorical", tags = "multi" }} }}
[splits.temporal]
[splits.leave_one_out]
[recommenders.most-popular]
use = "popularity"
[evaluation]
metrics = ["ndcg", "hit_rate"]
ks = [5]
""")
    described = run_cli("data", "describe", str(spec), "--format", "json", cwd=tmp_path)
    assert described.returncode == 0, described.stderr
    description = json.loads(described.stdout)
    assert description["dataset"]["item_features"] == {"brand": "categorical", "tags": "multi"}
    assert set(description["splits"]) == {"temporal", "leave_one_out"}
    assert description["splits"]["temporal"]["future_leak"]["test_cases_before_it"] == 0
    assert description["splits"]["leave_one_out"]["future_leak"]["test_cases_before_it"] > 0
    text = run_cli("data", "describe", str(spec), cwd=tmp_path)
    assert "future leak" in text.stdout and "repeat rate" in text.stdout
    bad = run_cli("data", "describe", str(spec), "--set", 'dataset.events.columns.item="skuu"', cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "no column 'skuu'" in bad.stderr and "clicks.csv" in bad.stderr
    ran = run_cli("-q", "run", str(spec), "--set", "splits.leave_one_out={}", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["data"]["dataset"] == "events" and results["data"]["unknown_items"]["rows"] == 0
    assert results["protocols"]["temporal"]["splitter"] == "temporal"
    env = {"RECPLUG_REGISTRY": str(tmp_path / "registry")}
    answer = run_cli("recommend", "mine-most-popular-temporal", "--user", "v001", "-k", "3", "--format", "json", env=env)
    assert answer.returncode == 0, answer.stderr
    recommended = json.loads(answer.stdout)
    assert recommended["user"] == "v001" and all(r["item_id"].startswith("sku-") for r in recommended["recommendations"])
    assert {h["item_id"] for h in recommended["history"]}.isdisjoint(r["item_id"] for r in recommended["recommendations"])


def test_nan_ratings_table_only_users_and_zero_padded_ids(tmp_path: Path) -> None:
    log = pd.DataFrame({"u": ["007", "007", "8", "8"], "i": [1, 2, 1, 2], "t": [1, 2, 3, 4], "r": [1.0, 2.0, 3.0, 4.0]})
    log.to_parquet(tmp_path / "log.parquet", index=False)
    (tmp_path / "users.csv").write_text("u,age\n007,30\n8,40\n9,50\n")
    base = {"path": str(tmp_path / "log.parquet"), "columns": {"user": "u", "item": "i", "time": "t", "rating": "r"},
            "cache": False, "users": {"path": str(tmp_path / "users.csv"), "key": "u", "features": {"age": "numeric"},
                                      "all_rows": True}}  # fmt: skip
    data = Events(structure({**base, "filters": {"min_rating": 2}}, EventsOptions, "x")).load(RunContext())
    assert data.user_ids.tolist() == ["007", "8", "9"]  # text ids as written; the table's user 9 keeps its token
    assert data.user_info.record(2) == {"age": 50} and data.n_interactions == 3
    import pyarrow as pa
    import pyarrow.parquet as pq

    nan = pa.Table.from_pandas(log, preserve_index=False).set_column(3, "r", pa.array([1.0, np.nan, 3.0, 4.0], from_pandas=False))
    pq.write_table(nan, tmp_path / "log.parquet")  # a real NaN, not a missing value
    with pytest.raises(DataError, match=r"1 rating values are not numbers \(first: nan in row 2"):
        Events(structure(base, EventsOptions, "x")).load(RunContext())
