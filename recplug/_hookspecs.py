"""The hooks a recplug plugin can implement.

A plugin is a module (or object) exposed through the ``recplug`` entry-point group.
It implements hooks with :data:`hookimpl`::

    from recplug.api import hookimpl

    @hookimpl
    def register_components(register):
        register.model("gru4rec", GRU4Rec, GRU4RecOptions)

Each hook receives a small registrar object rather than returning values, so one
plugin can register any number of components of any kind.
"""

from __future__ import annotations

import pluggy

from ._registrar import Registrar

PROJECT = "recplug"
PLUGIN_API_VERSION = 1
"""Bumped when the hooks or the component interfaces change incompatibly. A plugin may
declare the version it was built for as a module attribute ``RECPLUG_PLUGIN_API``."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_components(register: Registrar) -> None:
    """Register datasets, splitters, models, baselines and metrics.

    Call ``register.dataset(name, cls, options_cls)`` (likewise ``splitter``,
    ``model``, ``baseline``, ``metric``) once per component. ``options_cls`` is an
    attrs class describing the component's spec options; recplug builds it from the
    spec and passes it to ``cls(options)``.
    """
