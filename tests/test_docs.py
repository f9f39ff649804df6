"""The Sphinx docs build without warnings, and every code example in them runs (sphinx doctest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("sphinx", reason="sphinx is in the dev extras")


@pytest.mark.parametrize("builder", ["html", "doctest"])
def test_docs_build_cleanly(builder: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder, str(REPO / "docs"), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hook_is_documented_in_the_plugin_guide() -> None:
    from recplug import hookspecs

    guide = (REPO / "docs" / "plugins.rst").read_text()
    hooks = [n for n in dir(hookspecs) if getattr(getattr(hookspecs, n), "recplug_spec", None) is not None]
    for name in hooks:
        assert f"recplug._hookspecs.{name}" in guide, f"hook {name} is missing from docs/plugins.rst"
