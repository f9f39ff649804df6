"""Where recplug keeps files by default (all overridable by environment variables)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: object, what: str) -> str:
    """``name`` when it is safe as one path component (letters, digits, '.', '_', '-'; not starting with '.'
    or '-'; at most 128 characters), else a ValueError saying so: a name a user gives (an experiment, a label,
    a model, an alias) never reaches outside the folder it belongs in."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise ValueError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' and '-' (starting with a letter or digit, "
            "at most 128 characters)"
        )
    return name


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


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 16 MB blocks (hashlib releases the GIL: other threads run meanwhile)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(16 << 20):
            digest.update(block)
    return digest.hexdigest()
