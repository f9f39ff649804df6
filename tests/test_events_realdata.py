"""The real MovieLens files read through the events dataset give exactly what the movielens plugin gives: the
same interactions, counts and leave-one-out metrics (ml-latest-small's ratings.csv, ml-100k's tab-separated
u.data without a header; ML-1M's '::' files need the movielens plugin)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recplug._components import RunContext
from recplug._runner import run_experiment
from recplug._spec import parse_spec
from recplug_movielens import MovieLens, MovieLensOptions

pytestmark = pytest.mark.realdata
pytest.importorskip("pyarrow")


def events_table(base: Path, variant: str) -> dict:
    if variant == "ml-latest-small":
        return {"path": str(base / variant / "ratings.csv"), "columns": {"user": "userId", "item": "movieId",
                "time": "timestamp", "rating": "rating"}, "items": {"path": str(base / variant / "movies.csv"),
                "key": "movieId", "features": {"title": "text", "genres": "multi"}, "all_rows": True}}  # fmt: skip
    return {"path": str(base / variant / "u.data"), "format": "tsv", "names": ["user", "item", "rating", "time"],
            "columns": {"rating": "rating"}}  # fmt: skip


def spec(dataset: dict) -> dict:
    return {
        "experiment": {"name": "same", "seed": 3, "register": False},
        "dataset": dataset,
        "splits": {"leave_one_out": {}},
        "recommenders": {
            "most-popular": {"use": "popularity"},
            "transformer": {"objective": "all_positions", "join": "last", "context_length": 20, "embedding_dim": 16,
                            "num_layers": 1, "num_heads": 1, "user_embedding_dim": 0, "interaction_hidden": [],
                            "output": "tied", "training": {"epochs": 1, "max_steps_per_epoch": 20}},
        },
        "evaluation": {"metrics": ["ndcg", "hit_rate", "mrr", "coverage"], "ks": [10]},
    }  # fmt: skip


@pytest.mark.parametrize("variant", ["ml-latest-small", "ml-100k"])
def test_events_reads_movielens_exactly_like_the_movielens_plugin(real_movielens: Path, plugins, tmp_path: Path,
                                                                  variant: str) -> None:  # fmt: skip
    reference = MovieLens(MovieLensOptions(variant=variant, data_dir=str(real_movielens), cache=False)).load(RunContext())
    results = {}
    for name, dataset in (("movielens", {"movielens": {"variant": variant, "data_dir": str(real_movielens)}}),
                          ("events", {"events": events_table(real_movielens, variant)})):  # fmt: skip
        run = run_experiment(parse_spec(spec(dataset), plugins), plugins, run_dir=tmp_path / name)
        results[name] = run.results
    from recplug._config import structure
    from recplug_events import Events, EventsOptions

    data = Events(structure(events_table(real_movielens, variant), EventsOptions, "events")).load(RunContext())
    for array in ("user_ids", "item_ids", "offsets", "items", "ratings", "timestamps"):
        assert np.array_equal(getattr(reference, array), getattr(data, array)), array
    assert reference.summary() == data.summary()
    rows = {name: {(r["recommender"], r["metric"], r["k"]): r["value"] for r in result["rows"]}
            for name, result in results.items()}  # fmt: skip
    assert rows["events"] == rows["movielens"]  # exactly: the same tokens give the same training and ranking
    assert results["events"]["protocols"] == results["movielens"]["protocols"]
