from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from helpers import run_cli, write_spec
from recplug._components import RunContext
from recplug._errors import DataError
from recplug_movielens import MovieLens, MovieLensOptions
from recplug_movielens.formats import read_ratings


def load(folder: Path, **options) -> object:
    return MovieLens(MovieLensOptions(data_dir=str(folder), **options)).load(RunContext())


def test_tokens_sequences_and_vocabularies(ml1m_dir: Path) -> None:
    data = load(ml1m_dir)
    raw = [line.split("::") for line in (ml1m_dir / "ratings.dat").read_text().splitlines()]
    assert data.n_interactions == len(raw)
    assert data.n_users == 60 and data.n_items == 50  # every listed user and movie, rated or not
    assert data.pad_token == 50
    assert list(data.item_ids[:3]) == [1, 3, 5]  # tokens follow sorted raw ids
    assert data.summary()["rated_items"] == 47
    # Each user's sequence is their ratings ordered by time, ties in file order (stable sort).
    for user in (0, 7, 59):
        uid = data.user_ids[user]
        rows = [r for r in raw if int(r[0]) == uid]
        rows.sort(key=lambda r: int(r[3]))  # Python's sort is stable: file order within ties
        expected = np.searchsorted(data.item_ids, [int(r[1]) for r in rows])
        assert list(data.sequence(user)) == list(expected)
        assert list(data.timestamps[data.offsets[user] : data.offsets[user + 1]]) == [int(r[3]) for r in rows]
    assert data.fingerprint == hashlib.sha256((ml1m_dir / "ratings.dat").read_bytes()).hexdigest()
    assert data.item_info.record(0)["title"] == "Movie 1: Caf\xe9 (1950)"
    assert data.item_info.record(1)["year"] == 1951  # a whole number, not 1951.0
    assert data.item_info.kinds == {"title": "text", "genres": "multi", "year": "numeric"}
    assert all(isinstance(g, list) and g for g in data.item_info.frame["genres"])  # lists, no '|' convention
    assert {"gender", "age", "occupation"} <= set(data.user_info.columns("categorical"))


def test_data_dir_may_hold_the_variant_folder(ml1m_dir: Path) -> None:
    assert load(ml1m_dir.parent).n_users == 60


def test_environment_variable_points_at_the_data(ml1m_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECPLUG_DATA_DIR", str(ml1m_dir.parent))
    assert MovieLens(MovieLensOptions()).load(RunContext()).n_users == 60


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("7::5::4\n", "expected 4 fields"),
        ("7::five::4::978300000\n", "MovieID is not a number: 'five'"),
        ("7::5::4::978300000::1\n", "expected 4 fields"),
        ("7:5::4::978300000\n", "expected 4 fields"),
        ("7::5::4::\n", "Timestamp is not a number"),
    ],
)
def test_malformed_rating_line_names_file_and_line(ml1m_dir: Path, line: str, fragment: str) -> None:
    path = ml1m_dir / "ratings.dat"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(10, line)
    path.write_text("".join(lines))
    with pytest.raises(DataError) as info:
        load(ml1m_dir)
    assert info.value.where == f"{path}:11"
    assert fragment in info.value.message


def test_empty_and_missing_files(ml1m_dir: Path, tmp_path: Path) -> None:
    (ml1m_dir / "ratings.dat").write_text("")
    with pytest.raises(DataError, match="empty"):
        load(ml1m_dir)
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no ratings.dat"):
        load(tmp_path / "empty")


def test_missing_movies_file(ml1m_dir: Path) -> None:
    (ml1m_dir / "movies.dat").unlink()
    with pytest.raises(DataError, match="file not found") as info:
        load(ml1m_dir)
    assert info.value.where.endswith("movies.dat")


def test_rating_of_unlisted_movie_is_reported(ml1m_dir: Path) -> None:
    with (ml1m_dir / "ratings.dat").open("a") as f:
        f.write("1::9999::3::978300000\n")
    with pytest.raises(DataError, match="item id missing from the item list .first: 9999"):
        load(ml1m_dir)


def test_offline_without_data_explains_where_to_put_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECPLUG_DATA_DIR", raising=False)
    monkeypatch.setenv("RECPLUG_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="download = false"):
        MovieLens(MovieLensOptions(download=False)).load(RunContext())


def test_download_verifies_checksum(tmp_path: Path, ml1m_dir: Path) -> None:
    import zipfile

    from recplug_movielens.download import download_release

    archive = tmp_path / "fake.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("ratings.dat", "movies.dat", "users.dat"):
            zf.write(ml1m_dir / name, f"ml-1m/{name}")
    target = tmp_path / "cache" / "ml-1m"
    with pytest.raises(DataError, match="checksum mismatch"):
        download_release("ml-1m", target, url=archive.as_uri())
    assert not target.exists()  # nothing half-made is left where a later run would use it
    with pytest.raises(DataError, match="could not download"):
        download_release("ml-1m", target, url=(tmp_path / "absent.zip").as_uri())


def test_other_movielens_formats(tmp_path: Path) -> None:
    small = tmp_path / "ml-latest-small"
    small.mkdir()
    (small / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.5,100\n1,20,3.0,50\n2,10,5.0,70\n")
    (small / "movies.csv").write_text('movieId,title,genres\n10,"Heat, The (1995)",Action|Crime\n20,Up (2009),Animation\n')
    data = load(small, variant="ml-latest-small")
    assert data.n_users == 2 and data.n_items == 2
    assert list(data.sequence(0)) == [1, 0]
    assert data.ratings.tolist() == [3.0, 4.5, 5.0]
    assert data.item_info.record(0) == {"title": "Heat, The (1995)", "genres": ["Action", "Crime"], "year": 1995}

    k100 = tmp_path / "ml-100k"
    k100.mkdir()
    (k100 / "u.data").write_text("1\t2\t3\t10\n1\t1\t4\t5\n2\t1\t5\t7\n")
    flags = "|".join(["0"] * 19)
    (k100 / "u.item").write_text(f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n2|GoldenEye (1995)|01-Jan-1995||http://x|{flags}\n")
    (k100 / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    data = load(k100, variant="ml-100k")
    assert list(data.sequence(0)) == [0, 1]
    assert data.user_info.record(1)["gender"] == "F"


@pytest.mark.realdata
def test_real_ml1m_counts(real_ml1m: Path) -> None:
    data = load(real_ml1m)
    assert data.summary() == {"interactions": 1_000_209, "users": 6_040, "items": 3_883, "rated_items": 3_706}
    assert data.pad_token == 3883
    assert data.fingerprint == "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f"
    assert data.lengths.min() >= 20
    assert np.all(np.diff(data.timestamps)[np.diff(data.user_of) == 0] >= 0)  # time-ordered within users
    raw = read_ratings(real_ml1m / "ratings.dat")
    assert float(raw.ratings.mean()) == pytest.approx(3.581564, abs=1e-6)


def test_second_load_comes_from_the_fingerprint_cache(ml1m_dir: Path) -> None:
    first = load(ml1m_dir)
    second = load(ml1m_dir)
    assert isinstance(second.items, np.memmap) and not isinstance(first.items, np.memmap)
    for name in ("user_ids", "item_ids", "offsets", "items", "ratings", "timestamps"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert second.item_info.to_json() == first.item_info.to_json()
    assert second.user_info.to_json() == first.user_info.to_json()
    # the cache is keyed by every file read: an edited movies.dat is served, never the cached titles
    movies = ml1m_dir / "movies.dat"
    movies.write_bytes(movies.read_bytes().replace(b"Movie 1: Caf", b"Edited 1: Caf"))
    assert load(ml1m_dir).item_info.record(0)["title"].startswith("Edited 1")
    # a changed file has another fingerprint: parsed again, never served stale
    ratings = ml1m_dir / "ratings.dat"
    ratings.write_text(ratings.read_text() + "1::1::5::978300000\n")
    third = load(ml1m_dir)
    assert third.n_interactions == first.n_interactions + 1 and not isinstance(third.items, np.memmap)


def test_exact_duplicate_rows_are_dropped_keeping_the_first(ml1m_dir: Path) -> None:
    path = ml1m_dir / "ratings.dat"
    first_line = path.read_text().splitlines()[0]
    user, movie, _, stamp = first_line.split("::")
    path.write_text(path.read_text() + f"{user}::{movie}::1::{stamp}\n" + first_line + "\n")
    data = load(ml1m_dir)
    assert data.source["duplicate_rows_dropped"] == 2
    raw_rows = len(path.read_text().splitlines())
    assert data.n_interactions == raw_rows - 2
    token = int(np.searchsorted(data.user_ids, int(user)))
    seq = data.sequence(token).tolist()
    assert seq.count(int(np.searchsorted(data.item_ids, int(movie)))) == 1


def test_utf16_rating_file_is_refused_clearly(ml1m_dir: Path) -> None:
    path = ml1m_dir / "ratings.dat"
    path.write_bytes(path.read_text().encode("utf-16"))
    with pytest.raises(DataError, match="not a plain-text rating file"):
        load(ml1m_dir)


@pytest.mark.parametrize("broken", ["missing folder", "malformed line"])
def test_data_errors_exit_2_naming_the_place(ml1m_dir: Path, tmp_path: Path, broken: str) -> None:
    ratings = ml1m_dir / "ratings.dat"
    data_dir = ml1m_dir if broken == "malformed line" else tmp_path / "nonexistent"
    ratings.write_text(ratings.read_text() + "12::oops::3::978300000\n")
    lines = len(ratings.read_text().splitlines())
    spec = write_spec(tmp_path / "s.toml", f'[dataset.movielens]\ndata_dir = "{data_dir}"\n[recommenders.popularity]\n')
    result = run_cli("run", str(spec), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    expected = (f"{ratings}:{lines}: malformed rating line: MovieID is not a number: 'oops'" if broken == "malformed line"
                else f"data_dir '{data_dir}' does not exist")  # fmt: skip
    assert expected in result.stderr
    assert not (tmp_path / "run").exists()
