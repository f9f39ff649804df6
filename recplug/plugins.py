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
from typing import Any, Literal

import attrs
import pluggy

from . import hookspecs
from .config import unknown_name_message
from .errors import PluginError
from .interfaces import Baseline, Dataset, Metric, Model, NoOptions, Splitter

Kind = Literal["dataset", "splitter", "model", "baseline", "metric"]
KINDS: tuple[Kind, ...] = ("dataset", "splitter", "model", "baseline", "metric")
_BASES = {"dataset": Dataset, "splitter": Splitter, "model": Model, "baseline": Baseline, "metric": Metric}
ENTRY_POINT_GROUP = "recplug"


class PluginWarning(UserWarning):
    """A plugin was skipped or one of its registrations was refused."""


@attrs.frozen
class Component:
    """One registered component: its kind, name, class, options class and where it comes from."""

    kind: Kind
    name: str
    cls: type
    options_cls: type
    plugin: str
    distribution: str
    version: str

    @property
    def description(self) -> str:
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class Registrar:
    """Handed to ``register_components``: one method per component kind."""

    def __init__(self, registry: PluginRegistry, plugin: str, distribution: str, version: str) -> None:
        self._registry = registry
        self._origin = (plugin, distribution, version)

    def dataset(self, name: str, cls: type[Dataset], options_cls: type = NoOptions) -> None:
        """Register a :class:`~recplug.interfaces.Dataset`."""
        self._add("dataset", name, cls, options_cls)

    def splitter(self, name: str, cls: type[Splitter], options_cls: type = NoOptions) -> None:
        """Register a :class:`~recplug.interfaces.Splitter` (an evaluation protocol)."""
        self._add("splitter", name, cls, options_cls)

    def model(self, name: str, cls: type[Model], options_cls: type = NoOptions) -> None:
        """Register a trained :class:`~recplug.interfaces.Model`."""
        self._add("model", name, cls, options_cls)

    def baseline(self, name: str, cls: type[Baseline], options_cls: type = NoOptions) -> None:
        """Register a fitted :class:`~recplug.interfaces.Baseline`."""
        self._add("baseline", name, cls, options_cls)

    def metric(self, name: str, cls: type[Metric], options_cls: type = NoOptions) -> None:
        """Register a :class:`~recplug.interfaces.Metric`."""
        self._add("metric", name, cls, options_cls)

    def _add(self, kind: Kind, name: str, cls: type, options_cls: type) -> None:
        plugin = self._origin[0]
        if not (isinstance(cls, type) and issubclass(cls, _BASES[kind])):
            raise PluginError(f"plugin {plugin!r}: {kind} {name!r} must subclass recplug {_BASES[kind].__name__}")
        if not attrs.has(options_cls):
            raise PluginError(f"plugin {plugin!r}: options of {kind} {name!r} must be an attrs class")
        self._registry.add(Component(kind, name, cls, options_cls, *self._origin))


class PluginRegistry:
    """The table of registered components, filled from entry points and/or explicit plugins."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.components: dict[tuple[Kind, str], Component] = {}
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

    def load_entry_points(self) -> None:
        """Import every plugin in the ``recplug`` entry-point group (filtered by ``RECPLUG_PLUGINS``)."""
        allowed = _allowed_plugins()
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
            self.manager.register(plugin, name=name)
        except ValueError as exc:
            self._skip(name, str(exc))
            return
        registrar = Registrar(self, name, distribution, version)
        for impl in self.manager.hook.register_components.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            try:
                impl.function(register=registrar)
            except PluginError as exc:
                self._skip(name, exc.message, partial=True)
            except Exception as exc:
                self._skip(name, f"register_components raised {type(exc).__name__}: {exc}", partial=True)

    def _skip(self, plugin: str, why: str, partial: bool = False) -> None:
        message = f"recplug plugin {plugin!r} {'partly ' if partial else ''}skipped: {why}"
        self.failures.append(message)
        warnings.warn(message, PluginWarning, stacklevel=2)

    def get(self, kind: Kind, name: str) -> Component:
        """The component of ``kind`` called ``name``; unknown names list the registered ones."""
        try:
            return self.components[(kind, name)]
        except KeyError:
            known = [n for (k, n) in self.components if k == kind]
            raise PluginError(unknown_name_message(kind, name, known)) from None

    def find(self, name: str, kinds: tuple[Kind, ...], what: str) -> Component:
        """The component called ``name`` among several kinds (``what`` names them, e.g. 'recommender')."""
        for kind in kinds:
            if (kind, name) in self.components:
                return self.components[(kind, name)]
        known = [n for (k, n) in self.components if k in kinds]
        raise PluginError(unknown_name_message(what, name, known))

    def of_kind(self, kind: Kind) -> list[Component]:
        return [c for (k, _), c in sorted(self.components.items()) if k == kind]


def _allowed_plugins() -> set[str] | None:
    value = os.environ.get("RECPLUG_PLUGINS", "").strip()
    return {part.strip() for part in value.split(",") if part.strip()} if value else None


_default: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """The process-wide plugin registry, loaded from entry points on first use."""
    global _default
    if _default is None:
        registry = PluginRegistry()
        registry.load_entry_points()
        _default = registry
    return _default
