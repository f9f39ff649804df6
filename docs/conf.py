"""Sphinx configuration for recplug's documentation (built on ReadTheDocs and, with -W, in CI)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from docutils import nodes

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import recplug  # noqa: E402

project = "recplug"
author = "the recplug developers"
copyright = "2026, the recplug developers"
release = version = recplug.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.doctest", "sphinx.ext.viewcode", "sphinx.ext.intersphinx",
              "generate_reference"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "furo"  # wide tables scroll inside the page; code blocks keep their lines
html_title = f"recplug {release}"

# Links to the libraries recplug's API speaks in. Their inventories are fetched over the network, which the Read
# the Docs build has; offline builds (CI here) go without the links rather than fail.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "torch": ("https://pytorch.org/docs/stable", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "pandas": ("https://pandas.pydata.org/docs", None),
    "attrs": ("https://www.attrs.org/en/stable", None),
}
if not os.environ.get("READTHEDOCS"):
    intersphinx_mapping = {}

_METRIC_AT_K = re.compile(r"^[A-Za-z][A-Za-z_.]*@[0-9/]+$")  # NDCG@10, MRR@3/5/10


def _no_mailto_for_metrics(app: object, doctree: nodes.document) -> None:
    """docutils reads ``NDCG@10`` as an e-mail address; a metric at a cutoff is text, never a mailto: link."""
    for ref in list(doctree.findall(nodes.reference)):
        if ref.get("refuri", "").startswith("mailto:") and _METRIC_AT_K.match(ref.astext()):
            ref.replace_self(nodes.Text(ref.astext()))


def setup(app: object) -> None:
    app.connect("doctree-read", _no_mailto_for_metrics)  # type: ignore[attr-defined]
