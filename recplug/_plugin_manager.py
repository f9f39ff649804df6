"""Finding and registering plugins.

recplug loads every module exposed in the ``recplug`` entry-point group (its own
bundled plugins included), calls each one's ``register_components`` hook with a
:class:`Registrar`, and keeps the resulting :class:`Component` table. A plugin that
fails to import or to register is reported as a warning and skipped; the rest of
recplug keeps working.

``RECPLUG_PLUGINS=movielens,splits`` restricts loading to the named entry points.
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from typing import Any

import pluggy

from . import _hookspecs as hookspecs
from ._config import unknown_name_message
from ._errors import PluginError
from ._registrar import Component, Kind, Registrar, Unavailable

ENTRY_POINT_GROUP = "recplug"


class PluginWarning(UserWarning):
    """A plugin was skipped or one of its registrations was refused."""


class PluginManager:
    """Finds plugins and keeps the table of the components they register (not to be confused with the
    :class:`~recplug.ModelRegistry` of trained models)."""

    def __init__(self) -> None:
        self.hooks = pluggy.PluginManager(hookspecs.PROJECT)
        self.hooks.add_hookspecs(hookspecs)
        self.components: dict[tuple[Kind, str], Component] = {}
        self.unavailable: dict[tuple[Kind, str], Unavailable] = {}
        """Components plugins declared but could not register (a missing optional dependency)."""
        self.failures: list[str] = []

    def add(self, component: Component) -> None:
        key = (component.kind, component.name)
        if key in self.components:
            taken = self.components[key]
            raise PluginError(
                f"plugin {component.plugin!r}: {component.kind} name {component.name!r} is already "
                f"registered by plugin {taken.plugin!r} ({taken.distribution}); keeping the first"
            )
        self.components[key] = component

    def load_entry_points(self, only: set[str] | None = None) -> None:
        """Import every plugin in the ``recplug`` entry-point group, or those named in ``only`` (default: those
        named by ``RECPLUG_PLUGINS``, when set)."""
        allowed = only if only is not None else _allowed_plugins()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            dist = ep.dist.name if ep.dist else "unknown"
            version = ep.dist.version if ep.dist else "unknown"
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must not break recplug
                self._skip(ep.name, f"failed to import {ep.value!r} from {dist}: {type(exc).__name__}: {exc}")
                continue
            self.register_plugin(module, ep.name, dist, version)

    def register_plugin(self, plugin: Any, name: str, distribution: str = "unknown", version: str = "unknown") -> None:
        """Register one plugin object (a module or any object with hook implementations)."""
        api = getattr(plugin, "RECPLUG_PLUGIN_API", hookspecs.PLUGIN_API_VERSION)
        if api != hookspecs.PLUGIN_API_VERSION:
            self._skip(
                name,
                f"built for plugin API {api}, but this recplug provides API {hookspecs.PLUGIN_API_VERSION}; "
                f"upgrade {distribution} or recplug",
            )
            return
        try:
            self.hooks.register(plugin, name=name)
        except ValueError as exc:
            self._skip(name, str(exc))
            return
        registrar = Registrar(self.add, name, distribution, version, self._add_unavailable)
        for impl in self.hooks.hook.register_components.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            try:
                impl.function(register=registrar)
            except PluginError as exc:
                self._skip(name, exc.message, partial=True)
            except Exception as exc:
                self._skip(name, f"register_components raised {type(exc).__name__}: {exc}", partial=True)

    def _add_unavailable(self, missing: Unavailable) -> None:
        self.unavailable.setdefault((missing.kind, missing.name), missing)

    def _skip(self, plugin: str, why: str, partial: bool = False) -> None:
        message = f"recplug plugin {plugin!r} {'partly ' if partial else ''}skipped: {why}"
        self.failures.append(message)
        warnings.warn(message, PluginWarning, stacklevel=2)

    def get(self, kind: Kind, name: str) -> Component:
        """The component of ``kind`` called ``name``; unknown names list the registered ones."""
        try:
            return self.components[(kind, name)]
        except KeyError:
            self._refuse_unavailable(name, (kind,))
            known = [n for (k, n) in self.components if k == kind]
            raise PluginError(unknown_name_message(kind, name, known)) from None

    def find(self, name: str, kinds: tuple[Kind, ...], what: str) -> Component:
        """The component called ``name`` among several kinds (``what`` names them, e.g. 'recommender')."""
        for kind in kinds:
            if (kind, name) in self.components:
                return self.components[(kind, name)]
        self._refuse_unavailable(name, kinds)
        known = [n for (k, n) in self.components if k in kinds]
        raise PluginError(unknown_name_message(what, name, known))

    def _refuse_unavailable(self, name: str, kinds: tuple[Kind, ...]) -> None:
        for kind in kinds:
            if (kind, name) in self.unavailable:
                missing = self.unavailable[(kind, name)]
                raise PluginError(f"{kind} {name!r} (plugin {missing.plugin!r}) is not available here: {missing.reason}")

    def of_kind(self, kind: Kind) -> list[Component]:
        return [c for (k, _), c in sorted(self.components.items()) if k == kind]


def plugin_of_file(filename: str) -> str | None:
    """The name of the loaded plugin whose package holds ``filename`` (None for recplug's own code and others)."""
    if _default is None:
        return None
    path = os.path.abspath(filename)
    for name, plugin in _default.hooks.list_name_plugin():
        source = getattr(plugin, "__file__", None)
        if source and path.startswith(os.path.dirname(os.path.abspath(source)) + os.sep):
            return name
    return None


def _allowed_plugins() -> set[str] | None:
    value = os.environ.get("RECPLUG_PLUGINS", "").strip()
    return {part.strip() for part in value.split(",") if part.strip()} if value else None


_default: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, loaded from entry points on first use."""
    global _default
    if _default is None:
        manager = PluginManager()
        manager.load_entry_points()
        _default = manager
    return _default
