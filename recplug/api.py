"""The plugin API: everything a recplug plugin imports, and the only module it should import from.

A plugin implements the hook in :mod:`recplug._hookspecs` (documented in the plugin guide) with
:data:`hookimpl` and registers components through the :class:`Registrar` it receives::

    from recplug.api import Baseline, hookimpl

    @hookimpl
    def register_components(register):
        register.baseline("random", RandomScores, RandomOptions)

Names here follow the deprecation policy: one release of warnings before anything is removed. Every other
``recplug`` module is internal and may change without notice.
"""

from __future__ import annotations

from ._components import Baseline, Dataset, NoOptions, Recommender, RunContext, Splitter, exclude
from ._data import (
    FeatureKind,
    FeatureTable,
    Interactions,
    build_interactions,
    format_moment,
    interactions_from_tokens,
    load_interactions,
    parse_moment,
    save_interactions,
)
from ._errors import DataError, PluginError, RecplugError, SpecError
from ._examples import ExampleSource, SequenceChunks, WindowExamples
from ._hookspecs import PLUGIN_API_VERSION, hookimpl
from ._metric import Metric, RankedLists
from ._paths import cache_dir, file_sha256
from ._plugin_manager import PluginManager, get_plugin_manager
from ._registrar import Component, Registrar
from ._split import EvalCases, Split, TrainView, gather_histories
from ._training import Model, TrainingOptions

__all__ = [
    # hooks and registration
    "PLUGIN_API_VERSION",
    "Component",
    "PluginManager",
    "Registrar",
    "get_plugin_manager",
    "hookimpl",
    # component bases and what the runner passes them
    "Baseline",
    "Dataset",
    "Metric",
    "Model",
    "NoOptions",
    "Recommender",
    "RunContext",
    "Splitter",
    "TrainingOptions",
    # data, splits and training examples
    "EvalCases",
    "ExampleSource",
    "FeatureKind",
    "FeatureTable",
    "Interactions",
    "SequenceChunks",
    "Split",
    "TrainView",
    "WindowExamples",
    "build_interactions",
    "cache_dir",
    "file_sha256",
    "format_moment",
    "gather_histories",
    "interactions_from_tokens",
    "load_interactions",
    "parse_moment",
    "save_interactions",
    # evaluation
    "RankedLists",
    "exclude",
    # errors
    "DataError",
    "PluginError",
    "RecplugError",
    "SpecError",
]
