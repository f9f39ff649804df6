"""Sphinx configuration for recplug's documentation (built on ReadTheDocs and, with -W, in CI)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import recplug  # noqa: E402

project = "recplug"
author = "the recplug developers"
copyright = "2026, the recplug developers"
release = version = recplug.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.doctest", "sphinx.ext.viewcode", "generate_reference"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"description": "Plugin-based recommender experiments", "fixed_sidebar": True}
