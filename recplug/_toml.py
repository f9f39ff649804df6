"""Writing TOML: specs that recplug produces (``recplug tune``'s best configuration) as runnable files."""

from __future__ import annotations

import json
import math
import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(data: dict[str, Any]) -> str:
    """``data`` (tables, strings, numbers, booleans, lists of them) as TOML text that reads back equal."""
    return _table(data, [])


def _table(data: dict[str, Any], path: list[str]) -> str:
    scalars = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    head = [f"[{'.'.join(_key(p) for p in path)}]"] if path and (scalars or not data) else []
    tables = [_table(v, [*path, k]) for k, v in data.items() if isinstance(v, dict)]
    text = "\n".join(head + scalars)
    return "\n".join(part for part in [text + "\n" if text else "", *tables] if part)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")
