"""The experiment spec: a TOML file turned into typed, validated objects.

Layout (every section but ``dataset`` may be omitted)::

    [experiment]                 # ExperimentOptions
    name = "ml1m"
    seed = 42

    [dataset.movielens]          # one dataset: [dataset.<plugin>] with the plugin's options
    variant = "ml-1m"

    [splits.leave_one_out]       # one or more protocols: [splits.<label>]
    [recommenders.popularity]    # one or more: [recommenders.<label>]
    [recommenders.most-popular]
    use = "popularity"           # the plugin, when the label is not the plugin's name
    method = "count"
    [recommenders.transformer]
    register_as = "ml1m-seed"    # models only: registry name (default: <experiment>-<label>[-<split>])
    [recommenders.transformer.training]   # models only: TrainingOptions
    epochs = 10
    [recommenders.wider]
    extends = "transformer"      # start from another recommender's table (training merged key by key)
    embedding_dim = 64

    [evaluation]                 # EvaluationOptions
    ks = [3, 5, 10]

Each component's options are checked against the attrs class its plugin registered,
so the core never needs to know a plugin's parameters.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ._config import did_you_mean, structure, unknown_key_message, unstructure
from ._errors import PluginError, SpecError
from ._evaluation import EvaluationOptions
from ._paths import check_name
from ._plugin_manager import PluginManager
from ._registrar import Kind
from ._training import Model, TrainingOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SECTIONS = ("experiment", "dataset", "splits", "recommenders", "evaluation", "tune")
"""The spec's top-level tables; ``[tune]`` is read by ``recplug tune`` only (:mod:`recplug._tuning`)."""


def _distinct_seeds(instance: object, attribute: attrs.Attribute, value: list[int]) -> None:
    if not value or any(seed < 0 for seed in value) or len(set(value)) != len(value):
        raise ValueError(f"'{attribute.name}' must list distinct seeds >= 0, got {value}")


@attrs.frozen
class ExperimentOptions:
    name: str = attrs.field(
        default="experiment",
        metadata={"doc": "Names the run directory and registered models (letters, digits, '.', '_', '-')."},
    )
    seed: int = attrs.field(default=0, validator=attrs.validators.ge(0), metadata={"doc": "Seeds every random number generator."})
    seeds: list[int] | None = attrs.field(
        default=None, validator=attrs.validators.optional(_distinct_seeds),
        metadata={"doc": "Train every recommender once per seed (e.g. [1, 2, 3]; `recplug run --seeds 3`): tables "
                         "show the mean and standard deviation across seeds. Default: [seed]. A recommender's own "
                         "`seeds` key overrides it."},
    )  # fmt: skip
    output_dir: str = attrs.field(default="runs", metadata={"doc": "Parent folder of run directories."})
    device: str = attrs.field(
        default="auto", metadata={"doc": "'auto' (CUDA, then MPS, then CPU), or a torch device such as 'cpu', 'cuda:1'."}
    )
    register: bool = attrs.field(
        default=True,
        metadata={"doc": "Register every fitted recommender that can be saved (trained models and baselines) in the "
                         "model registry after evaluation."},
    )
    registry: str | None = attrs.field(
        default=None, metadata={"doc": "Model registry folder (default: $RECPLUG_REGISTRY, else the user data dir)."}
    )


@attrs.frozen
class ComponentSpec:
    """One configured component: its label in the spec, the plugin behind it and its typed options.

    This is the one place where a spec table becomes an object: :meth:`from_table` reads a spec table,
    :meth:`from_record` what the model registry recorded, :meth:`build` constructs the component, and
    :meth:`provenance` is what the registry records. Models alone take ``training`` options and a
    ``register_as`` name.
    """

    label: str
    kind: Kind
    plugin: str
    options: Any
    training: TrainingOptions | None = None
    register_as: str | None = None
    seeds: list[int] | None = None
    """Recommenders only: the seeds to train it with (overrides ``experiment.seeds``)."""

    @classmethod
    def from_table(cls, label: str, table: dict[str, Any], kinds: tuple[Kind, ...], what: str,
                   plugins: PluginManager, path: str, base_dir: Path | None = None) -> ComponentSpec:  # fmt: skip
        """Validate a spec table (``use`` names the plugin, default: the label) against its plugin's options;
        relative paths in options marked ``metadata={"path": True}`` resolve against ``base_dir``."""
        if not isinstance(table, dict):
            raise SpecError(f"expected a table [{path}], got {type(table).__name__} {table!r}", where=path)
        _check_name(label, "label", path)
        table = dict(table)
        plugin = table.pop("use", label)
        if not isinstance(plugin, str):
            raise SpecError(f"expected a plugin name (string), got {plugin!r}", where=f"{path}.use")
        try:
            component = plugins.find(plugin, kinds, what)
        except PluginError as exc:
            raise SpecError(exc.message, where=f"{path}.use" if plugin != label else path) from None
        training = register_as = None
        seeds = _seeds(table.pop("seeds", None), f"{path}.seeds") if component.kind in ("model", "baseline") else None
        if component.kind == "model":
            training = structure(table.pop("training", {}), TrainingOptions, f"{path}.training")
            register_as = table.pop("register_as", None)
            if register_as is not None:
                _check_name(register_as, "model name", f"{path}.register_as")
        options: Any = _with_paths_resolved(structure(table, component.options_cls, path), base_dir)
        if training is not None and training.monitor == "loss" and not _offers_validation_examples(component.cls):
            raise SpecError(f"monitor = 'loss' needs validation examples, and the {plugin} model offers none; use "
                            "'ndcg@10' or 'auto'", where=f"{path}.training.monitor")  # fmt: skip
        return cls(label, component.kind, plugin, options, training, register_as, seeds)

    @classmethod
    def from_record(cls, record: dict[str, Any], plugins: PluginManager, where: str) -> ComponentSpec:
        """Rebuild from a :meth:`provenance` record (a registry entry); the plugin must be installed."""
        plugin = record["plugin"]
        try:
            component = plugins.get(plugin["kind"], plugin["name"])
        except PluginError:
            raise SpecError(
                f"needs the {plugin['kind']} plugin {plugin['name']!r} from {plugin['distribution']} "
                f"{plugin['version']}, which is not installed",
                where=where,
            ) from None
        options: Any = structure(record["options"], component.options_cls, f"{where} options")
        training = None
        if component.kind == "model":
            training = structure(record.get("training") or {}, TrainingOptions, f"{where} training")
        return cls(where, component.kind, component.name, options, training)

    def build(self, plugins: PluginManager) -> Any:
        """A new, unfitted component: ``cls(options)``, or ``cls(options, training)`` for a model."""
        cls = plugins.get(self.kind, self.plugin).cls
        return cls(self.options, self.training) if self.kind == "model" else cls(self.options)

    def provenance(self, plugins: PluginManager) -> dict[str, Any]:
        """What rebuilds this component later: its plugin (with distribution and version), options and training."""
        component = plugins.get(self.kind, self.plugin)
        return {
            "plugin": {"kind": component.kind, "name": component.name, "distribution": component.distribution,
                       "version": component.version},
            "options": unstructure(self.options),
            "training": unstructure(self.training),
        }  # fmt: skip

    def resolved(self) -> dict[str, Any]:
        """The component's table with every default filled in (JSON-ready)."""
        table = {"use": self.plugin, **unstructure(self.options)}
        if self.register_as:
            table["register_as"] = self.register_as
        if self.seeds is not None:
            table["seeds"] = list(self.seeds)
        if self.training is not None:
            table["training"] = unstructure(self.training)
        return table


@attrs.frozen
class ExperimentSpec:
    """A whole experiment, validated: what to load, how to split, what to fit, how to measure."""

    experiment: ExperimentOptions
    dataset: ComponentSpec
    splits: list[ComponentSpec]
    recommenders: list[ComponentSpec]
    evaluation: EvaluationOptions

    def registered_name(self, recommender: ComponentSpec, split: str) -> str:
        """The model registry name of a recommender fitted under a split: ``register_as``, else
        ``<experiment>-<label>``, with ``-<split>`` when the spec has several splits."""
        name = recommender.register_as or f"{self.experiment.name}-{recommender.label}"
        return f"{name}-{split}" if len(self.splits) > 1 else name

    def seeds_of(self, recommender: ComponentSpec) -> list[int]:
        """The seeds ``recommender`` is trained with: its own, else ``experiment.seeds``, else ``[experiment.seed]``."""
        return list(recommender.seeds or self.experiment.seeds or [self.experiment.seed])

    def resolved(self) -> dict[str, Any]:
        """The full spec with defaults filled in, as plain data."""
        return {
            "experiment": unstructure(self.experiment),
            "dataset": {self.dataset.label: self.dataset.resolved()},
            "splits": {s.label: s.resolved() for s in self.splits},
            "recommenders": {r.label: r.resolved() for r in self.recommenders},
            "evaluation": unstructure(self.evaluation),
        }


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; syntax errors name the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("spec file not found", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec file: {exc}", where=str(path)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"invalid TOML: {exc}", where=str(path)) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values in TOML syntax; bare words are strings)."""
    data = copy.deepcopy(data)
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"expected KEY.PATH=VALUE, got {override!r}", where="--set")
        *parents, leaf = [part.strip() for part in key.split(".")]
        if not all([*parents, leaf]):
            raise SpecError(f"{key!r} has an empty part (use KEY.PATH=VALUE, e.g. recommenders.transformer.lr=0.01)",
                            where="--set")  # fmt: skip
        table = data
        for i, part in enumerate(parents):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise SpecError(f"{'.'.join(parents[: i + 1])} is not a table", where=f"--set {key}")
        table[leaf] = _parse_value(text.strip())
    return data


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def parse_spec(data: dict[str, Any], plugins: PluginManager, base_dir: Path | None = None) -> ExperimentSpec:
    """Validate plain spec data against the core classes and each plugin's options class.

    ``base_dir`` is the spec file's folder: relative paths in options marked ``metadata={"path": True}``
    resolve against it (so a spec works from any working directory)."""
    for key in data:
        if key not in SECTIONS:
            raise SpecError(unknown_key_message(key, list(SECTIONS)), where=key)
    datasets = _components(data, "dataset", ("dataset",), "dataset", plugins, base_dir)
    if len(datasets) != 1:
        raise SpecError(
            "expected exactly one dataset, e.g. [dataset.movielens]"
            + (f", got {len(datasets)}: {', '.join(d.label for d in datasets)}" if datasets else ""),
            where="dataset",
        )
    splits = _components(data, "splits", ("splitter",), "splitter", plugins, base_dir)
    if not splits:
        splits = [ComponentSpec("leave_one_out", "splitter", "leave_one_out", _default_options(plugins, "splitter", "leave_one_out"))]
    recommenders = _components(data, "recommenders", ("model", "baseline"), "recommender", plugins, base_dir)
    if not recommenders:
        raise SpecError("expected at least one recommender, e.g. [recommenders.popularity]", where="recommenders")
    spec = ExperimentSpec(
        experiment=structure(data.get("experiment", {}), ExperimentOptions, "experiment"),
        dataset=datasets[0],
        splits=splits,
        recommenders=recommenders,
        evaluation=structure(data.get("evaluation", {}), EvaluationOptions, "evaluation"),
    )
    from ._evaluation import resolve_metrics

    resolve_metrics(spec.evaluation.metrics, plugins)  # unknown metric names fail now, not after training
    _check_name(spec.experiment.name, "experiment name", "experiment.name")
    _check_registered_names(spec)
    labels = [r.label for r in recommenders]
    if spec.evaluation.reference is not None and spec.evaluation.reference not in labels:
        raise SpecError(f"no recommender is labelled {spec.evaluation.reference!r} (the recommenders: "
                        f"{', '.join(labels)}){did_you_mean(spec.evaluation.reference, labels)}",
                        where="evaluation.reference")  # fmt: skip
    return spec


def load_spec(path: str | Path, plugins: PluginManager, overrides: Sequence[str] = ()) -> ExperimentSpec:
    """Read, override and validate a spec file (relative paths in it resolve against its folder)."""
    return parse_spec(apply_overrides(read_toml(path), list(overrides)), plugins, Path(path).resolve().parent)


def _components(
    data: dict[str, Any], section: str, kinds: tuple[Kind, ...], what: str, plugins: PluginManager,
    base_dir: Path | None,
) -> list[ComponentSpec]:
    tables = data.get(section, {})
    if not isinstance(tables, dict):
        raise SpecError(f"expected tables like [{section}.<name>], got {type(tables).__name__}", where=section)
    tables = _with_extends_expanded(tables, section)
    return [ComponentSpec.from_table(label, table, kinds, what, plugins, f"{section}.{label}", base_dir)
            for label, table in tables.items()]  # fmt: skip


def _with_extends_expanded(tables: dict[str, Any], section: str) -> dict[str, Any]:
    """Tables with ``extends = "<label>"`` start from that table of the same section: its plugin, options and
    ``training`` (merged key by key), never its ``register_as`` or ``seeds``; their own keys win. Chains are followed."""
    expanded: dict[str, Any] = {}

    def expand(label: str, chain: list[str]) -> Any:
        table = tables[label]
        if label in expanded or not isinstance(table, dict) or "extends" not in table:
            return expanded.get(label, table)
        parent, where = table["extends"], f"{section}.{label}.extends"
        if not isinstance(parent, str) or parent not in tables:
            others = [t for t in tables if t != label]
            raise SpecError(f"cannot extend {parent!r}: no such table{did_you_mean(str(parent), others)} "
                            f"(tables: {', '.join(others) or 'none'})", where=where)  # fmt: skip
        if parent in chain or parent == label:
            raise SpecError(f"circular extends: {' -> '.join([*chain, label, parent])}", where=where)
        base = expand(parent, [*chain, label])
        if not isinstance(base, dict):
            raise SpecError(f"cannot extend {parent!r}: it is not a table", where=where)
        merged = {"use": parent, **{k: copy.deepcopy(v) for k, v in base.items() if k not in ("register_as", "seeds")}}
        own = {k: v for k, v in table.items() if k != "extends"}
        if isinstance(merged.get("training"), dict) and isinstance(own.get("training"), dict):
            own["training"] = {**merged["training"], **own["training"]}
        expanded[label] = {**merged, **own}
        return expanded[label]

    return {label: expand(label, []) for label in tables}


def _with_paths_resolved(options: Any, base_dir: Path | None) -> Any:
    """``options`` with its relative path fields (``metadata={"path": True}``) made absolute from ``base_dir``,
    also in nested option tables (an events dataset's ``items.path``)."""
    if base_dir is None:
        return options
    changes = {}
    for field in attrs.fields(type(options)):
        value = getattr(options, field.name)
        if field.metadata.get("path") and isinstance(value, str) and not Path(value).expanduser().is_absolute():
            changes[field.name] = str(base_dir / value)
        elif attrs.has(type(value)):
            resolved = _with_paths_resolved(value, base_dir)
            if resolved is not value:
                changes[field.name] = resolved
    return attrs.evolve(options, **changes) if changes else options


def _check_registered_names(spec: ExperimentSpec) -> None:
    """Two recommenders of one run may not register under one name (they would become versions of one model)."""
    if not spec.experiment.register:
        return
    owners: dict[str, str] = {}
    for recommender in spec.recommenders:
        for split in spec.splits:
            name = spec.registered_name(recommender, split.label)
            if name in owners and owners[name] != recommender.label:
                raise SpecError(f"registers as {name!r}, like recommenders.{owners[name]}: give each its own "
                                "register_as", where=f"recommenders.{recommender.label}.register_as")  # fmt: skip
            owners[name] = recommender.label


def _offers_validation_examples(cls: type) -> bool:
    return getattr(cls, "validation_examples", None) is not Model.validation_examples


def _seeds(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or any(type(v) is not int or v < 0 for v in value) or len(
            set(value)) != len(value):  # fmt: skip
        raise SpecError(f"expected a list of distinct seeds >= 0, e.g. [1, 2, 3], got {value!r}", where=where)
    return value


def _check_name(name: object, what: str, where: str) -> None:
    try:
        check_name(name, what)
    except ValueError as exc:
        raise SpecError(str(exc), where=where) from None


def _default_options(plugins: PluginManager, kind: Kind, name: str) -> Any:
    return plugins.get(kind, name).options_cls()
