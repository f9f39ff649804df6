"""Property-based tests: random specs and randomly damaged rating files end in success or one RecplugError,
never in an unexpected exception."""

from __future__ import annotations

import shutil

import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, given, settings

from helpers import write_ml1m
from recplug._components import RunContext
from recplug._errors import RecplugError
from recplug._spec import apply_overrides, parse_spec
from recplug_movielens import MovieLens, MovieLensOptions

VALID = {
    "experiment": {"name": "p", "seed": 1},
    "dataset": {"movielens": {"variant": "ml-1m"}},
    "splits": {"leave_one_out": {}, "seed_windows": {"sequence_length": 5}},
    "recommenders": {"popularity": {"method": "count"}, "transformer": {"embedding_dim": 8, "training": {"epochs": 1}}},
    "evaluation": {"ks": [5], "metrics": ["ndcg"]},
}
KEYS = ["experiment", "dataset", "splits", "recommenders", "evaluation", "movielens", "popularity", "transformer",
        "training", "epochs", "seed", "ks", "metrics", "use", "variant", "method", "embedding_dim", "num_heads",
        "join", "sequence_length", "lr", "nope", "leave_one_out", "register_as", "device"]  # fmt: skip
TOML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["count", "ml-1m", "last", "cpu", "transformer", "popularity", "ndcg"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(path=st.lists(st.sampled_from(KEYS), min_size=1, max_size=4), value=TOML_VALUES)
def test_random_spec_edits_parse_or_fail_cleanly(plugins, path: list[str], value: object) -> None:
    data = apply_overrides(VALID, [])
    table = data
    for key in path[:-1]:
        child = table.get(key)
        if not isinstance(child, dict):
            child = table[key] = {}
        table = child
    if value is None:
        table.pop(path[-1], None)
    else:
        table[path[-1]] = value
    try:
        parse_spec(data, plugins)
    except RecplugError as exc:
        assert str(exc)


@settings(max_examples=25, deadline=None)
@given(text=st.text(max_size=40))
def test_random_override_strings_parse_or_fail_cleanly(plugins, text: str) -> None:
    try:
        parse_spec(apply_overrides(VALID, [text]), plugins)
    except RecplugError as exc:
        assert str(exc)


MUTATIONS = st.sampled_from(["insert", "delete", "replace", "truncate", "duplicate_line", "blank_line"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutations=st.lists(
        st.tuples(MUTATIONS, st.integers(0, 10**6), st.binary(min_size=1, max_size=6) | st.sampled_from([b":", b"::", b"\n", b"x", b"-1"])),
        min_size=1, max_size=4,
    )
)  # fmt: skip
def test_damaged_rating_files_load_or_fail_cleanly(tmp_path_factory, mutations) -> None:
    folder = tmp_path_factory.mktemp("ml") / "ml-1m"
    write_ml1m(folder, n_users=12, n_movies=15, per_user=(3, 6))
    path = folder / "ratings.dat"
    raw = bytearray(path.read_bytes())
    for kind, position, payload in mutations:
        at = position % (len(raw) + 1)
        if kind == "insert":
            raw[at:at] = payload
        elif kind == "delete":
            del raw[at : at + len(payload)]
        elif kind == "replace":
            raw[at : at + len(payload)] = payload
        elif kind == "truncate":
            del raw[at:]
        elif kind == "duplicate_line":
            raw += bytes(raw).split(b"\n")[0] + b"\n"
        else:
            raw[at:at] = b"\n"
    path.write_bytes(bytes(raw))
    try:
        data = MovieLens(MovieLensOptions(data_dir=str(folder), cache=False)).load(RunContext())
        # whatever loads is consistent: CSR offsets, tokens inside the vocabulary, time order within users
        assert data.offsets[0] == 0 and data.offsets[-1] == data.n_interactions
        assert np.all(np.diff(data.offsets) >= 0) and (data.items < data.n_items).all()
        assert np.all(np.diff(data.timestamps)[np.diff(data.user_of) == 0] >= 0)
    except RecplugError as exc:
        assert str(exc)
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
