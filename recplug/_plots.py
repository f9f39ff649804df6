"""Plots for recplug's self-contained HTML pages: matplotlib figures embedded as PNG (the pages work offline)."""

from __future__ import annotations

import base64
import importlib.util
import io
from typing import Any

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:.9em}td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:right;white-space:nowrap}
th{background:#f4f4f4}td.params,td.label{text-align:left;font-family:monospace}img{max-width:100%}.note{color:#666}"""


def can_plot() -> bool:
    """Whether matplotlib is installed (``recplug[report]``)."""
    return importlib.util.find_spec("matplotlib") is not None


def figure_html(draw: Any, *args: Any, size: tuple[float, float] = (8, 3.6)) -> str:
    """An ``<img>`` of the figure ``draw(axes, *args)`` makes, as an embedded PNG; its alt text is the name of ``draw``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cycler import cycler

    figure, axes = plt.subplots(figsize=size, dpi=100)
    # ten colours, then the same ten dashed, then dotted: no two of thirty lines look alike
    axes.set_prop_cycle(cycler(linestyle=["-", "--", ":"]) * cycler(color=plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    try:
        draw(axes, *args)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return f'<img alt="{draw.__name__.strip("_")}" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'
