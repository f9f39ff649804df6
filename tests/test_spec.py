from __future__ import annotations

from pathlib import Path

import pytest

from recplug._errors import SpecError
from recplug._spec import apply_overrides, load_spec, parse_spec

BASE = {
    "experiment": {"name": "t", "seed": 1},
    "dataset": {"movielens": {"variant": "ml-1m"}},
    "recommenders": {"popularity": {}, "top": {"use": "popularity", "method": "count"}},
}


def test_parse_builds_typed_components(plugins) -> None:
    spec = parse_spec(BASE, plugins)
    assert spec.experiment.seed == 1
    assert [s.label for s in spec.splits] == ["leave_one_out"]  # the default protocol
    assert [(r.label, r.plugin) for r in spec.recommenders] == [("popularity", "popularity"), ("top", "popularity")]
    assert spec.recommenders[1].options.method == "count"
    resolved = spec.resolved()
    assert resolved["recommenders"]["top"] == {"use": "popularity", "method": "count", "percentile": 95.0}
    assert parse_spec(resolved, plugins).resolved() == resolved  # the resolved spec is itself a valid spec


def test_model_sections_take_training_options(plugins) -> None:
    data = {**BASE, "recommenders": {"transformer": {"embedding_dim": 8, "training": {"epochs": 2}}}}
    spec = parse_spec(data, plugins)
    assert spec.recommenders[0].training.epochs == 2
    with pytest.raises(SpecError) as info:
        parse_spec({**BASE, "recommenders": {"transformer": {"training": {"epoch": 2}}}}, plugins)
    assert info.value.where == "recommenders.transformer.training.epoch"
    assert "did you mean 'epochs'" in info.value.message


@pytest.mark.parametrize(
    ("change", "where", "fragment"),
    [
        ({"experimnt": {}}, "experimnt", "did you mean 'experiment'"),
        ({"recommenders": {"trasformer": {}}}, "recommenders.trasformer", "did you mean 'transformer'"),
        ({"recommenders": {"x": {"use": "nope"}}}, "recommenders.x.use", "unknown recommender 'nope' (registered recommenders: "),
        ({"recommenders": {"transformer": {"num_heads": "4"}}}, "recommenders.transformer.num_heads", "expected an integer"),
        ({"recommenders": {"transformer": {"embedding_dropout": -0.1}}}, "recommenders.transformer.embedding_dropout", ">= 0.0"),
        ({"dataset": {"movielens": {"variant": "ml-2m"}}}, "dataset.movielens.variant", "expected one of"),
        ({"dataset": {}}, "dataset", "exactly one dataset"),
        ({"evaluation": {"ks": [0, 5]}}, "evaluation.ks", "positive cutoffs"),
        ({"evaluation": {"metrics": []}}, "evaluation.metrics", "at least one metric"),
        ({"evaluation": {"metrics": ["ndgc"]}}, "evaluation.metrics[0]", "did you mean 'ndcg'"),
        ({"splits": {"loo": {"use": "leave_one_out", "min_interactions": 1}}}, "splits.loo.min_interactions", ">= 3"),
    ],
)
def test_spec_errors_name_the_place(plugins, change: dict, where: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**BASE, **change}, plugins)
    assert info.value.where == where
    assert fragment in info.value.message


def test_overrides_are_typed_and_validated(plugins) -> None:
    data = apply_overrides(BASE, ["experiment.seed=7", "evaluation.ks=[1, 2]", "recommenders.top.method=mean_rating_of_popular"])
    spec = parse_spec(data, plugins)
    assert spec.experiment.seed == 7 and spec.evaluation.ks == [1, 2]
    assert spec.recommenders[1].options.method == "mean_rating_of_popular"
    assert BASE["experiment"]["seed"] == 1  # the original is untouched
    with pytest.raises(SpecError, match="expected an integer"):
        parse_spec(apply_overrides(BASE, ["experiment.seed=abc"]), plugins)
    with pytest.raises(SpecError, match="KEY.PATH=VALUE"):
        apply_overrides(BASE, ["experiment.seed"])


def test_toml_syntax_error_has_line_and_column(tmp_path: Path, plugins) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[experiment]\nname = "x\n')
    with pytest.raises(SpecError, match=r"line 2, column") as info:
        load_spec(path, plugins)
    assert info.value.where == str(path)
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "missing.toml", plugins)


def test_extends_starts_from_another_recommender(plugins) -> None:
    recommenders = {
        "transformer": {"embedding_dim": 8, "num_heads": 2, "register_as": "base-model",
                        "training": {"epochs": 2, "lr": 0.01}},
        "wider": {"extends": "transformer", "embedding_dim": 16, "training": {"epochs": 3}},
        "wider-deeper": {"extends": "wider", "num_layers": 6},
        "top": {"use": "popularity", "method": "count"},
        "top-mean": {"extends": "top", "method": "mean_rating_of_popular"},
    }  # fmt: skip
    spec = parse_spec({**BASE, "recommenders": recommenders}, plugins)
    by_label = {r.label: r for r in spec.recommenders}
    wider, deeper = by_label["wider"], by_label["wider-deeper"]
    assert wider.plugin == "transformer" and wider.options.embedding_dim == 16 and wider.options.num_heads == 2
    assert (wider.training.epochs, wider.training.lr) == (3, 0.01)  # training merged key by key
    assert wider.register_as is None  # a registry name is never inherited
    assert deeper.options.embedding_dim == 16 and deeper.options.num_layers == 6 and deeper.training.epochs == 3
    assert by_label["top-mean"].plugin == "popularity" and by_label["top-mean"].options.method == "mean_rating_of_popular"
    assert "extends" not in spec.resolved()["recommenders"]["wider"]  # the resolved spec is fully expanded
    assert parse_spec(spec.resolved(), plugins).resolved() == spec.resolved()


@pytest.mark.parametrize(
    ("recommenders", "fragment"),
    [
        ({"a": {"use": "popularity", "extends": "popularty"}}, "cannot extend 'popularty': no such table"),
        ({"a": {"extends": "b"}, "b": {"extends": "a"}}, "circular extends: a -> b -> a"),
        ({"a": {"extends": 3}}, "cannot extend 3"),
        ({"a": {"extends": "b"}, "b": 5}, "cannot extend 'b': it is not a table"),
    ],
)
def test_bad_extends_is_one_clear_error(plugins, recommenders: dict, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**BASE, "recommenders": recommenders}, plugins)
    assert fragment in info.value.message and info.value.where.endswith(".extends")
