"""The Sphinx docs build without warnings, and every code example in them runs (sphinx doctest)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("builder", ["html", "doctest"])
def test_docs_build_cleanly(builder: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder, str(REPO / "docs"), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    if builder == "html":  # metric names such as NDCG@10 are text, not e-mail links
        linked = [page.name for page in tmp_path.glob("*.html") if "mailto:" in page.read_text()]
        assert not linked, f"mailto: links in {linked}"


def hook_signature(hook: object) -> str:
    """``name(param: Type, ...) -> Return`` with bare type names, as the plugin guide writes it."""
    signature = inspect.signature(hook, eval_str=True)  # type: ignore[arg-type]
    name = lambda tp: "None" if tp is None or tp is type(None) else getattr(tp, "__name__", str(tp))  # noqa: E731
    params = ", ".join(f"{p.name}: {name(p.annotation)}" for p in signature.parameters.values())
    return f"{hook.__name__}({params}) -> {name(signature.return_annotation)}"  # type: ignore[attr-defined]


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    from recplug import _hookspecs as hookspecs

    guide = (REPO / "docs" / "plugins.rst").read_text()
    hooks = [getattr(hookspecs, n) for n in dir(hookspecs) if getattr(getattr(hookspecs, n), "recplug_spec", None)]
    assert hooks, "no hookspecs found"
    for hook in hooks:
        assert hook_signature(hook) in guide, f"docs/plugins.rst lacks the hook signature {hook_signature(hook)}"
        assert f"recplug._hookspecs.{hook.__name__}" in guide, f"docs/plugins.rst lacks the docstring of {hook.__name__}"


def test_the_signature_check_sees_a_changed_signature() -> None:
    def register_components(register: int, extra: str) -> None: ...

    assert hook_signature(register_components) == "register_components(register: int, extra: str) -> None"
