"""recplug: a plugin-based recommender toolkit.

Two public namespaces: this package, for users (:func:`load_model`, :class:`ModelRegistry`), and
:mod:`recplug.api`, everything a plugin author imports. Every other module is internal.
"""

from __future__ import annotations

import os

# Before torch loads its OpenMP runtime: a waiting thread spins for 3,000 rounds (GNU OpenMP's default is
# 300,000), then sleeps, so that several recplug processes on one machine share its cores instead of burning
# them (docs/results.rst, "Sharing the CPU"). A wait policy or spin count the user set is kept.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "3000"

from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any

from ._errors import RecplugError
from ._version import __version__

if TYPE_CHECKING:
    from ._model_registry import ModelRegistry, ServedModel

__all__ = ["ModelRegistry", "RecplugError", "ServedModel", "__version__", "load_model"]


def load_model(ref: str, registry: str | Path | None = None) -> ServedModel:
    """Load a registered model (``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``) ready to ``recommend()``."""
    from ._model_registry import ModelRegistry

    return ModelRegistry(registry).load(ref)


def __getattr__(name: str) -> Any:
    if name in ("ModelRegistry", "ServedModel"):  # imported on first use: torch loads only when needed
        from . import _model_registry

        return getattr(_model_registry, name)
    if name == "hookimpl":
        from ._deprecated import warn_moved

        warn_moved("recplug.hookimpl", "hookimpl")
        from ._hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'recplug' has no attribute {name!r}")
