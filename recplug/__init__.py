"""recplug: a plugin-based recommender toolkit."""

from __future__ import annotations

from .errors import RecplugError
from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["RecplugError", "__version__", "hookimpl"]
