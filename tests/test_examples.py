"""Every example spec parses and validates against the installed plugins (a broken example fails here, not on a
user's machine after the download)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recplug._spec import load_spec

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted(REPO.glob("examples/*.toml")) + [REPO / "examples" / "recplug-youtube-dnn" / "youtube-dnn.toml"]


def test_there_are_examples() -> None:
    assert {p.name for p in SPECS} >= {"ml1m.toml", "popularity.toml", "ml1m-loo-fast.toml", "youtube-dnn.toml"}


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_example_spec_is_valid(path: Path, plugins) -> None:
    spec = load_spec(path, plugins)
    assert spec.recommenders and spec.splits and spec.evaluation.ks
