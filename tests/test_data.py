"""Interactions and typed metadata, independent of any dataset plugin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recplug._errors import DataError
from recplug.api import FeatureTable, build_interactions


def test_string_ids_are_tokenised_in_sorted_order() -> None:
    data = build_interactions(np.array(["bob", "ann", "bob"], dtype=object), np.array(["tea", "jam", "jam"], dtype=object),
                              [1, 2, 3], [5, 1, 2], fingerprint="s")  # fmt: skip
    assert data.user_ids.tolist() == ["ann", "bob"] and data.item_ids.tolist() == ["jam", "tea"]
    assert data.sequence(1).tolist() == [0, 1]  # bob: jam (t=2) then tea (t=5)
    with pytest.raises(DataError, match="missing from the item list"):
        build_interactions(["a"], ["x"], [1], [1], fingerprint="s", item_ids=np.array(["y"], dtype=object))


def test_feature_tables_declare_every_column() -> None:
    frame = pd.DataFrame({"title": ["A", "B"], "tags": [["x"], ["x", "y"]], "year": [1999.0, np.nan]})
    with pytest.raises(DataError, match=r"undeclared columns \['year'\]"):
        FeatureTable(frame, {"title": "text", "tags": "multi"})
    with pytest.raises(DataError, match="unknown kinds"):
        FeatureTable(frame, {"title": "text", "tags": "list", "year": "numeric"})
    table = FeatureTable(frame, {"title": "text", "tags": "multi", "year": "numeric"})
    assert table.record(0) == {"title": "A", "tags": ["x"], "year": 1999} and table.record(1)["year"] is None
    matrix, values = table.multi_hot("tags")
    assert values == ["x", "y"] and matrix.tolist() == [[True, False], [True, True]]
    assert FeatureTable.from_json(table.to_json()).to_json() == table.to_json()  # the cache and registry form
