"""A tiny Sphinx extension: writes the spec reference (from the attrs option classes of every registered
component) and the CLI reference (from the argparse parser) before each build, so neither can drift."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import attrs

GENERATED = Path(__file__).resolve().parent / "_generated"


def _type_name(tp: object) -> str:
    text = tp.__name__ if isinstance(tp, type) else str(tp)
    return re.sub(r"\b[a-z_]+\.", "", text).replace("NoneType", "None")  # typing.X, recplug_events.tables.X -> X


def _default(field: attrs.Attribute) -> str:
    if field.default is attrs.NOTHING:
        return "*required*"
    if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
        value = field.default.factory()
        return "the table's defaults (below)" if attrs.has(type(value)) else f"``{value!r}``"
    return f"``{field.default!r}``"


def options_table(cls: type, title: str, underline: str = "~") -> str:
    cls = attrs.resolve_types(cls)
    lines = [title, underline * len(title), ""]
    fields = attrs.fields(cls)
    if not fields:
        return "\n".join(lines + ["No options.", ""])
    lines += [".. list-table::", "   :header-rows: 1", "   :widths: 20 25 20 35", "",
              "   * - key", "     - type", "     - default", "     - meaning"]  # fmt: skip
    nested = []
    for f in fields:
        doc = f.metadata.get("doc", "")
        lines += [f"   * - ``{f.name}``", f"     - ``{_type_name(f.type)}``", f"     - {_default(f)}", f"     - {doc}"]
        nested += [(f.name, tp) for tp in (f.type, *typing.get_args(f.type)) if attrs.has(tp)]
    lines.append("")
    for name, tp in nested:  # option tables inside options (an events dataset's columns, items, filters)
        lines.append(options_table(tp, f"``{name}`` (a table in the one above)", "^"))
    return "\n".join(lines)


def spec_reference() -> str:
    from recplug._evaluation import EvaluationOptions
    from recplug._plugin_manager import get_plugin_manager
    from recplug._registrar import KINDS
    from recplug._spec import ExperimentOptions
    from recplug._training import TrainingOptions
    from recplug._tuning import TuneOptions

    out = [options_table(ExperimentOptions, "[experiment]", "-"), options_table(EvaluationOptions, "[evaluation]", "-"),
           options_table(TrainingOptions, "[recommenders.<label>.training] (models only)", "-"),
           options_table(TuneOptions, "[tune] (read by recplug tune only; see :doc:`/tuning`)", "-")]  # fmt: skip
    sections = {"dataset": "dataset", "splitter": "splits", "model": "recommenders", "baseline": "recommenders",
                "metric": "evaluation.metrics"}  # fmt: skip
    registry = get_plugin_manager()
    for kind in KINDS:
        title = f"{kind.capitalize()} plugins"
        out += [title, "-" * len(title), ""]
        for c in registry.of_kind(kind):
            where = f"[{sections[kind]}.{c.name}]" if kind != "metric" else f'metrics = ["{c.name}"]'
            out.append(options_table(c.options_cls, f"{c.name} ({c.distribution} {c.version}): ``{where}``"))
            out += [c.description, ""]
    return "\n".join(out)


def cli_reference() -> str:
    import argparse

    from recplug.cli import build_parser

    parser = build_parser()
    out = []

    def walk(p: argparse.ArgumentParser, name: str) -> None:
        out.extend([f"``{name}``", "-" * (len(name) + 4), "", "::", ""])
        out.extend("    " + line for line in p.format_help().replace(p.prog, name, 1).splitlines())
        out.append("")
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")

    walk(parser, "recplug")
    return "\n".join(out)


def generate(_app: object) -> None:
    GENERATED.mkdir(exist_ok=True)
    for name, text in (("spec_reference.rst", spec_reference()), ("cli_reference.rst", cli_reference())):
        path = GENERATED / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def setup(app: typing.Any) -> dict[str, bool]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True}
