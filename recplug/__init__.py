"""recplug: a plugin-based recommender toolkit."""

from __future__ import annotations

from .errors import RecplugError
from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["RecplugError", "__version__", "hookimpl", "load_model"]


def load_model(ref: str, registry: str | None = None):
    """Load a registered model (``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``) ready to ``recommend()``."""
    from .registry import load_model as _load

    return _load(ref, registry)
