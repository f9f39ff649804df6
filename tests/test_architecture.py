"""The boundaries of the code base: plugins use only the public API, and recplug's modules form no import cycle."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import recplug.api

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "recplug"
PLUGIN_SOURCES = [REPO / "plugins", REPO / "examples" / "recplug-gru4rec" / "src", REPO / "tests" / "plugins"]


def _imports(path: Path, module: str) -> list[tuple[str, list[str], int]]:
    """Every import in a file, including those under ``if TYPE_CHECKING:`` and inside functions:
    (imported module, names taken from it, line)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.append((base, [alias.name for alias in node.names], node.lineno))
    return found


def test_plugins_import_only_the_public_api() -> None:
    offences = []
    for root in PLUGIN_SOURCES:
        for path in sorted(root.rglob("*.py")):
            for module, _names, line in _imports(path, path.stem):
                if (module == "recplug" or module.startswith("recplug.")) and module != "recplug.api":
                    offences.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not offences, "plugins must import from recplug.api only:\n" + "\n".join(offences)


def _module_graph() -> dict[str, set[str]]:
    modules = {f"recplug.{p.stem}" if p.stem != "__init__" else "recplug": p for p in PACKAGE.glob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names, _line in _imports(path, name):
            if target == "recplug":  # 'from . import _x' names a module; 'from . import x' may name an attribute
                graph[name] |= {f"recplug.{n}" for n in names if f"recplug.{n}" in modules}
            elif target in modules:
                graph[name].add(target)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_in_recplug() -> None:
    graph = _module_graph()
    assert graph["recplug._training"] >= {"recplug._components", "recplug._evaluation"}  # the graph is real
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


RUN_MODULES = ["_runner", "_training", "_evaluation", "_comparison", "_cases", "_run_report"]


@pytest.mark.parametrize("name", RUN_MODULES)
def test_an_experiment_imports_its_own_modules_before_it_trains(name: str) -> None:
    """No recplug import inside a function of what ``recplug run`` executes: a recplug upgraded (or edited) while a
    long training runs would otherwise be imported half-new after the training, and could fail its registration."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    late = [node.lineno for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(function)
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("recplug"))]  # fmt: skip
    assert late == [], f"recplug/{name}.py imports recplug modules inside functions at lines {late}"


def test_the_cycle_finder_finds_a_type_only_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_api_exports_resolve_and_are_documented() -> None:
    for name in recplug.api.__all__:
        assert hasattr(recplug.api, name), name
    page = (REPO / "docs" / "api.rst").read_text()
    undocumented = [name for name in recplug.api.__all__ if f"recplug.api.{name}\n" not in page]
    assert not undocumented, f"names of recplug.api missing from docs/api.rst: {undocumented}"


@pytest.mark.parametrize(
    ("old_module", "name"),
    [("recplug.interfaces", "Baseline"), ("recplug.interfaces", "Model"), ("recplug.data", "Interactions"),
     ("recplug.split", "TrainView"), ("recplug.batches", "SequenceChunks"), ("recplug.evaluation", "RankedLists"),
     ("recplug.errors", "DataError"), ("recplug.hookspecs", "hookimpl"), ("recplug.training", "TrainingOptions")],
)  # fmt: skip
def test_old_import_paths_still_work_with_a_warning_naming_the_new_import(old_module: str, name: str) -> None:
    module = importlib.import_module(old_module)
    with pytest.warns(DeprecationWarning, match=f"from recplug.api import {name}"):
        value = getattr(module, name)
    assert value is getattr(recplug.api, name)


def test_old_internal_names_warn_that_they_are_internal() -> None:
    module = importlib.import_module("recplug.data")
    with pytest.warns(DeprecationWarning, match="internal to recplug"):
        tokenize = module.tokenize
    from recplug._data import tokenize as current

    assert tokenize is current
    with warnings.catch_warnings(), pytest.raises(AttributeError):
        warnings.simplefilter("ignore")
        _ = module.no_such_name
