"""What a plugin registers: :class:`Component` rows, added through the :class:`Registrar` its hook receives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import attrs

from ._components import Baseline, Dataset, NoOptions, Splitter
from ._errors import PluginError
from ._metric import Metric
from ._training import Model

Kind = Literal["dataset", "splitter", "model", "baseline", "metric"]
KINDS: tuple[Kind, ...] = ("dataset", "splitter", "model", "baseline", "metric")
_BASES: dict[Kind, type] = {"dataset": Dataset, "splitter": Splitter, "model": Model, "baseline": Baseline,
                            "metric": Metric}  # fmt: skip


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


@attrs.frozen
class Unavailable:
    """A component a plugin would register but cannot here (an optional dependency is missing): why, and how to
    get it. ``recplug plugins`` lists it, and a spec that names it fails with the reason."""

    kind: Kind
    name: str
    reason: str
    plugin: str
    distribution: str
    version: str


class Registrar:
    """Handed to ``register_components``: one method per component kind, and :meth:`unavailable`."""

    def __init__(self, add: Callable[[Component], None], plugin: str, distribution: str, version: str,
                 add_unavailable: Callable[[Unavailable], None] | None = None) -> None:  # fmt: skip
        self._add_component = add
        self._add_unavailable = add_unavailable
        self._origin = (plugin, distribution, version)

    def dataset(self, name: str, cls: type[Dataset], options_cls: type = NoOptions) -> None:
        """Register a :class:`~recplug.api.Dataset`."""
        self._add("dataset", name, cls, options_cls)

    def splitter(self, name: str, cls: type[Splitter], options_cls: type = NoOptions) -> None:
        """Register a :class:`~recplug.api.Splitter` (an evaluation protocol)."""
        self._add("splitter", name, cls, options_cls)

    def model(self, name: str, cls: type[Model], options_cls: type = NoOptions) -> None:
        """Register a trained :class:`~recplug.api.Model`."""
        self._add("model", name, cls, options_cls)

    def baseline(self, name: str, cls: type[Baseline], options_cls: type = NoOptions) -> None:
        """Register a fitted :class:`~recplug.api.Baseline`."""
        self._add("baseline", name, cls, options_cls)

    def metric(self, name: str, cls: type[Metric], options_cls: type = NoOptions) -> None:
        """Register a :class:`~recplug.api.Metric`."""
        self._add("metric", name, cls, options_cls)

    def unavailable(self, kind: Kind, name: str, reason: str) -> None:
        """Declare a component that cannot be registered here, e.g. ``register.unavailable("baseline", "als",
        "needs implicit: pip install 'recplug[implicit]'")`` when an optional dependency is missing."""
        if kind not in KINDS:
            raise PluginError(f"plugin {self._origin[0]!r}: unknown component kind {kind!r} for {name!r}")
        if self._add_unavailable is not None:
            self._add_unavailable(Unavailable(kind, name, reason, *self._origin))

    def _add(self, kind: Kind, name: str, cls: type, options_cls: type) -> None:
        plugin = self._origin[0]
        if not (isinstance(cls, type) and issubclass(cls, _BASES[kind])):
            raise PluginError(f"plugin {plugin!r}: {kind} {name!r} must subclass recplug {_BASES[kind].__name__}")
        if not attrs.has(options_cls):
            raise PluginError(f"plugin {plugin!r}: options of {kind} {name!r} must be an attrs class")
        self._add_component(Component(kind, name, cls, options_cls, *self._origin))
