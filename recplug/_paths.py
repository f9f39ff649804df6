"""Where recplug keeps files by default (all overridable by environment variables)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$RECPLUG_CACHE_DIR``, else ``$XDG_CACHE_HOME/recplug``, else ``~/.cache/recplug``."""
    if value := os.environ.get("RECPLUG_CACHE_DIR"):
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "recplug"


def registry_dir() -> Path:
    """``$RECPLUG_REGISTRY``, else ``$XDG_DATA_HOME/recplug/registry``, else ``~/.local/share/recplug/registry``."""
    if value := os.environ.get("RECPLUG_REGISTRY"):
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_DATA_HOME", "~/.local/share")).expanduser() / "recplug" / "registry"
