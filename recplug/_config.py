"""Typed configuration: plain TOML values -> attrs classes, with precise errors.

Plugins describe their options as attrs classes (with defaults, types, validators and
``metadata={"doc": ...}``). :func:`structure` turns a TOML table into such a class and
reports problems by key path: ``recommenders.transformer.num_heads: expected int, got
str 'four'``; unknown keys get a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar, cast

import attrs
import cattrs

from ._errors import SpecError

T = TypeVar("T")


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    return value


def _strict_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected a number")
    return float(value)


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


converter = cattrs.Converter()
"""The converter used for leaf values: strict about ints, floats, bools and strings."""
converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(float, _strict_float)
converter.register_structure_hook(bool, _strict_bool)
converter.register_structure_hook(str, _strict_str)


def structure(data: Any, cls: type[T], path: str) -> T:
    """Build ``cls`` (an attrs class) from a TOML table, naming ``path`` in every error."""
    if not isinstance(data, dict):
        raise SpecError(f"expected a table, got {_describe(data)}", where=path)
    fields = {f.name: f for f in attrs.fields(attrs.resolve_types(cast(Any, cls)))}
    unknown = [key for key in data if key not in fields]
    if unknown:
        raise SpecError(unknown_key_message(unknown[0], list(fields)), where=_join(path, unknown[0]))
    values = {}
    for name, field in fields.items():
        if name not in data:
            if field.default is attrs.NOTHING:
                raise SpecError(f"missing required key ({_type_name(field.type)})", where=_join(path, name))
            continue
        values[name] = structure_value(data[name], field.type, _join(path, name))
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        field_name = _field_named_in(exc, fields)
        raise SpecError(str(exc), where=_join(path, field_name) if field_name else path) from None


def structure_value(value: Any, tp: Any, path: str) -> Any:
    """Convert one value to type ``tp`` (attrs classes, lists, dicts and optionals included)."""
    origin = typing.get_origin(tp)
    if attrs.has(tp):
        return structure(value, tp, path)
    if origin in (list, tuple) and isinstance(value, list):
        (item_type, *_) = typing.get_args(tp) or (Any,)
        items = [structure_value(v, item_type, f"{path}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict and isinstance(value, dict):
        _, value_type = typing.get_args(tp)
        return {k: structure_value(v, value_type, _join(path, k)) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return structure_value(value, arg, path)
            except SpecError:
                continue
        raise SpecError(f"expected {_type_name(tp)}, got {_describe(value)}", where=path)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise SpecError(f"expected one of {', '.join(map(repr, choices))}, got {_describe(value)}", where=path)
        return value
    try:
        return converter.structure(value, tp)
    except Exception:
        raise SpecError(f"expected {_type_name(tp)}, got {_describe(value)}", where=path) from None


def unstructure(obj: Any) -> Any:
    """The plain (JSON/TOML-ready) form of an attrs options object."""
    return converter.unstructure(obj)


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """'unknown model 'trasformer'; did you mean 'transformer'? (registered: ...)'."""
    hint = did_you_mean(name, known)
    listing = ", ".join(sorted(known)) or "none"
    return f"unknown {kind} {name!r}{hint} (registered {kind}s: {listing})"


def unknown_key_message(key: str, valid: list[str]) -> str:
    """'unknown key; did you mean ...? (valid keys: ...)'."""
    return f"unknown key{did_you_mean(key, valid)} (valid keys: {', '.join(valid) or 'none'})"


def did_you_mean(name: str, valid: list[str]) -> str:
    """'; did you mean 'x'?' for the closest valid name, or ''."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _field_named_in(exc: Exception, fields: dict[str, Any]) -> str | None:
    text = str(exc)
    for name in fields:
        if f"'{name}'" in text or text.startswith(name):
            return name
    return None


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}.get(
            tp.__name__, tp.__name__
        )
    return str(tp).replace("typing.", "")


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"
