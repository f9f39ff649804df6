"""Forwarding for the import paths of recplug 0.1, kept for one release with a warning naming the new import.

recplug 0.1 documented its modules (``recplug.interfaces``, ``recplug.data``, ...) as the plugin API. Those
modules are now internal (``recplug._components``, ...) and :mod:`recplug.api` is the one public surface; each
old path is a small module whose attributes are looked up here on first use.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

REMOVED_IN = "0.3"


def warn_moved(old: str, name: str) -> None:
    warnings.warn(
        f"{old} is deprecated and will be removed in recplug {REMOVED_IN}: use 'from recplug.api import {name}'",
        DeprecationWarning,
        stacklevel=4,
    )


def forwarder(old_module: str, internal_module: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old_module``: public names come from :mod:`recplug.api`, the rest (with a
    warning that they are internal) from ``internal_module``."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        from . import api

        if name in api.__all__:
            warn_moved(f"{old_module}.{name}", name)
            return getattr(api, name)
        module = importlib.import_module(internal_module)
        if not hasattr(module, name):
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        warnings.warn(
            f"{old_module}.{name} is internal to recplug and {old_module} will be removed in recplug {REMOVED_IN}; "
            f"plugins should use only recplug.api",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(module, name)

    return __getattr__
