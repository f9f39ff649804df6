"""The one exception type for problems a user can cause and fix.

Anything raised as :class:`RecplugError` reaches the command line as a single
message (no traceback) and exit status 2. Everything else is a bug in recplug or
in a plugin and keeps its traceback.
"""

from __future__ import annotations


class RecplugError(Exception):
    """A problem with the user's input: a spec, a data file, a plugin name, a registry entry."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class SpecError(RecplugError):
    """The experiment spec (TOML file or ``--set`` override) is invalid."""


class DataError(RecplugError):
    """A data file is missing or malformed."""


class PluginError(RecplugError):
    """A plugin name is unknown, or a plugin broke the plugin contract."""
