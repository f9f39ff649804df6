from __future__ import annotations

from typing import Literal

import attrs
import pytest

from recplug._config import structure, unstructure
from recplug._errors import SpecError


@attrs.frozen
class Inner:
    size: int = attrs.field(default=3, validator=attrs.validators.ge(1))


@attrs.frozen
class Options:
    num_heads: int = 4
    rate: float = 0.1
    name: str = "x"
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    sizes: list[int] = attrs.field(factory=lambda: [16])
    inner: Inner = attrs.field(factory=Inner)
    maybe: int | None = None


def test_defaults_and_values_round_trip() -> None:
    opts = structure({"num_heads": 8, "rate": 1, "sizes": [1, 2], "inner": {"size": 5}}, Options, "m")
    assert opts == Options(num_heads=8, rate=1.0, sizes=[1, 2], inner=Inner(5))
    assert isinstance(opts.rate, float)
    assert structure(unstructure(opts), Options, "m") == opts


@pytest.mark.parametrize(
    ("data", "where", "fragment"),
    [
        ({"num_head": 2}, "model.t.num_head", "did you mean 'num_heads'?"),
        ({"num_heads": "four"}, "model.t.num_heads", "expected an integer, got string 'four'"),
        ({"num_heads": 2.5}, "model.t.num_heads", "expected an integer"),
        ({"num_heads": True}, "model.t.num_heads", "expected an integer"),
        ({"flag": 1}, "model.t.flag", "expected true or false"),
        ({"mode": "c"}, "model.t.mode", "expected one of 'a', 'b'"),
        ({"sizes": [1, "x"]}, "model.t.sizes[1]", "expected an integer"),
        ({"inner": {"size": 0}}, "model.t.inner.size", "must be >= 1"),
        ({"inner": {"sise": 2}}, "model.t.inner.sise", "did you mean 'size'?"),
        ({"inner": 3}, "model.t.inner", "expected a table"),
        ({"maybe": "z"}, "model.t.maybe", "expected"),
    ],
)
def test_errors_name_the_key_path(data: dict, where: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        structure(data, Options, "model.t")
    assert info.value.where == where
    assert fragment in info.value.message


def test_missing_required_key() -> None:
    @attrs.frozen
    class Required:
        path: str

    with pytest.raises(SpecError, match="missing required key") as info:
        structure({}, Required, "dataset.x")
    assert info.value.where == "dataset.x.path"
