"""Hyper-parameter search: ``recplug tune`` runs an Optuna study over the ``[tune]`` table of a spec.

The honest way is the only way: every trial is scored on the split's *validation* cases (its per-epoch
validation measure drives pruning), and the test cases are touched once, by the final run of the best
configuration, which is registered with its trial and study recorded.

A search lives in a *tune directory*: ``tune.json`` (the spec it searches), ``study.db`` (the SQLite study,
unless ``--storage`` names another database), ``best.toml`` (the best configuration as a runnable spec),
``best-trial-N/`` (the final run's directory), ``tune.html`` (the report) and ``summary.json``. Several processes (``--jobs``,
or several ``recplug tune --resume DIR`` on machines sharing a database) work on one study; together they finish
exactly ``trials`` trials (complete or pruned). An interrupted trial is run again on ``--resume``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._components import Recommender, RunContext
from ._config import structure, unknown_key_message
from ._data import Interactions
from ._devices import resolve_device, usable_cores
from ._errors import SpecError
from ._evaluation import rank_cases
from ._plugin_manager import PluginManager
from ._runner import load_dataset, make_split, run_experiment, seed_everything
from ._spec import ExperimentSpec, parse_spec, read_toml
from ._split import Split
from ._toml import dumps
from ._training import TrainingDiverged, TrainingInterrupted

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("recplug.tune")

DISTRIBUTIONS = ("choice", "uniform", "log_uniform", "int", "log_int")
"""How a parameter's range is written: ``{choice = [..]}``, ``{uniform = [low, high]}``, ``{log_uniform = [low,
high]}`` (low > 0), ``{int = [low, high]}`` (optionally ``step``), ``{log_int = [low, high]}`` (low >= 1)."""


@attrs.frozen
class TuneOptions:
    trials: int = attrs.field(default=20, validator=attrs.validators.ge(1),
                              metadata={"doc": "Trials to finish (complete or pruned), by all processes together."})  # fmt: skip
    metric: Literal["ndcg@10", "hit_rate@10"] = attrs.field(
        default="ndcg@10", metadata={"doc": "What the search maximises, always on the validation cases (never test)."}
    )
    sampler: Literal["tpe", "random"] = attrs.field(default="tpe", metadata={"doc": "Optuna sampler."})
    pruner: Literal["median", "hyperband", "none"] = attrs.field(
        default="median", metadata={"doc": "Stops unpromising trials early on their per-epoch validation metric."}
    )
    startup_trials: int = attrs.field(
        default=4, validator=attrs.validators.ge(0),
        metadata={"doc": "Trials before TPE models the space and the median pruner starts pruning."},
    )  # fmt: skip
    warmup_epochs: int = attrs.field(
        default=2, validator=attrs.validators.ge(0), metadata={"doc": "Epochs a trial always trains before it can be pruned."}
    )
    timeout_minutes: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "Start no new trial after this many minutes (none: no limit)."},
    )  # fmt: skip
    include_spec: bool = attrs.field(
        default=True, metadata={"doc": "Trial 0 is the spec's own configuration, so the table shows the untuned baseline."}
    )
    seed: int = attrs.field(default=0, validator=attrs.validators.ge(0), metadata={"doc": "Seeds the sampler."})


@attrs.frozen
class Param:
    """One searched parameter: a key of the tuned recommender's table (``training.lr`` for training options)."""

    key: str
    distribution: str
    low: float = 0.0
    high: float = 0.0
    step: int = 1
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.distribution == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.distribution in ("int", "log_int"):
            log_scale = self.distribution == "log_int"
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=self.step, log=log_scale)
        return trial.suggest_float(self.key, self.low, self.high, log=self.distribution == "log_uniform")

    def contains(self, value: Any) -> bool:
        if self.distribution == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.distribution in ("int", "log_int") and (value != int(value) or (value - self.low) % self.step):
            return False
        return self.low <= value <= self.high

    def candidates(self) -> list[Any]:
        """Values that must all fit the options: the choices, or both ends of the range."""
        if self.distribution == "choice":
            return list(self.choices)
        cast = int if self.distribution in ("int", "log_int") else float
        return [cast(self.low), cast(self.high)]


@attrs.frozen(eq=False)
class TuneSpec:
    """A spec with its ``[tune]`` table, validated: what to search and how."""

    data: dict[str, Any]
    """The spec as written, without ``[tune]`` (trials change it key by key)."""
    spec: ExperimentSpec
    recommender: str
    """Label of the tuned recommender."""
    space: list[Param]
    options: TuneOptions
    base_dir: Path | None

    def trial_spec(self, values: dict[str, Any], plugins: PluginManager) -> ExperimentSpec:
        """The spec with ``values`` (``key -> value``) set in the tuned recommender's table."""
        return parse_spec(self.trial_data(values), plugins, self.base_dir)

    def trial_data(self, values: dict[str, Any]) -> dict[str, Any]:
        data = json.loads(json.dumps(self.data))
        table = data["recommenders"][self.recommender]
        for key, value in values.items():
            *parents, leaf = key.split(".")
            node = table
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return data

    def spec_values(self) -> dict[str, Any]:
        """The spec's own values of the searched keys (defaults filled in)."""
        resolved = self.spec.resolved()["recommenders"][self.recommender]
        values = {}
        for param in self.space:
            node: Any = resolved
            for part in param.key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            values[param.key] = node
        return values


def parse_tune_spec(data: dict[str, Any], plugins: PluginManager, base_dir: Path | None = None) -> TuneSpec:
    """Validate a spec and its ``[tune]`` table: options, the tuned recommender, and that every value of every
    range fits that recommender's options (so a bad space fails now, not in trial 17)."""
    data = dict(data)
    table = data.pop("tune", None)
    if not isinstance(table, dict):
        raise SpecError("recplug tune needs a [tune] table with a [tune.space.\"recommenders.<label>\"] search space",
                        where="tune")  # fmt: skip
    spec = parse_spec(data, plugins, base_dir)
    table = dict(table)
    space_table = table.pop("space", None)
    options = structure(table, TuneOptions, "tune")
    if len(spec.splits) != 1:
        raise SpecError(f"a search is scored on one protocol's validation cases; the spec has {len(spec.splits)} "
                        "splits: keep one", where="splits")  # fmt: skip
    if not isinstance(space_table, dict) or not space_table:
        raise SpecError('expected a search space, e.g. [tune.space."recommenders.transformer"] with '
                        'embedding_dim = { choice = [32, 64] }', where="tune.space")  # fmt: skip
    if len(space_table) != 1:
        raise SpecError(f"a search tunes one recommender; the space names {len(space_table)}: "
                        f"{', '.join(space_table)}", where="tune.space")  # fmt: skip
    target, params = next(iter(space_table.items()))
    labels = [r.label for r in spec.recommenders]
    section, _, label = target.partition(".")
    where = f'tune.space."{target}"'
    if section != "recommenders" or label not in labels:
        raise SpecError(unknown_key_message(target, [f"recommenders.{x}" for x in labels]), where=where)
    if not isinstance(params, dict) or not params:
        raise SpecError("expected at least one parameter, e.g. embedding_dim = { choice = [32, 64] }", where=where)
    space = [_parse_param(key, value, f"{where}.{key}") for key, value in params.items()]
    tune_spec = TuneSpec(data, spec, label, space, options, base_dir)
    for param in space:
        for value in param.candidates():
            try:
                tune_spec.trial_spec({param.key: value}, plugins)
            except SpecError as exc:
                raise SpecError(f"the value {value!r} of this range does not fit: {exc}",
                                where=f"{where}.{param.key}") from None  # fmt: skip
    return tune_spec


def _parse_param(key: str, table: Any, where: str) -> Param:
    if not isinstance(table, dict) or len(table.keys() - {"step"}) != 1:
        raise SpecError(f"expected one of {', '.join(DISTRIBUTIONS)}, e.g. {{ log_uniform = [1e-4, 1e-2] }}, got "
                        f"{table!r}", where=where)  # fmt: skip
    (kind,) = table.keys() - {"step"}
    if kind not in DISTRIBUTIONS:
        raise SpecError(unknown_key_message(kind, list(DISTRIBUTIONS)), where=f"{where}.{kind}")
    value, step = table[kind], table.get("step", 1)
    if "step" in table and (kind != "int" or isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise SpecError("step is a positive integer, for int ranges only", where=f"{where}.step")
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise SpecError(f"expected a non-empty list of choices, got {value!r}", where=f"{where}.choice")
        if len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            raise SpecError(f"the choices repeat a value: {value!r}", where=f"{where}.choice")
        return Param(key, kind, choices=tuple(tuple(v) if isinstance(v, list) else v for v in value))
    numbers = isinstance(value, list) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)  # fmt: skip
    if not numbers:
        raise SpecError(f"expected [low, high], two numbers, got {value!r}", where=f"{where}.{kind}")
    low, high = value
    if kind in ("int", "log_int") and not all(isinstance(v, int) for v in value):
        raise SpecError(f"an {kind} range takes integers, got {value!r}", where=f"{where}.{kind}")
    if not low < high:
        raise SpecError(f"the range [{low}, {high}] is empty: low must be below high", where=f"{where}.{kind}")
    if kind.startswith("log_") and low <= 0:
        raise SpecError(f"a log range must stay above zero, got [{low}, {high}]", where=f"{where}.{kind}")
    if kind == "int" and (high - low) % step:
        raise SpecError(f"step {step} does not divide the range [{low}, {high}]", where=f"{where}.step")
    return Param(key, kind, float(low), float(high), step)


def require_optuna() -> Any:
    """The optuna module, or the one-line error that says how to install it."""
    try:
        import optuna
    except ImportError:
        raise SpecError("recplug tune needs Optuna and matplotlib: pip install 'recplug[tune]'", where="tune") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# -- the search ------------------------------------------------------------------------------------------------


@attrs.frozen
class TuneRun:
    """Where a search lives and how its processes reach the study."""

    folder: Path
    storage: str
    study_name: str

    @classmethod
    def create(cls, tune_spec: TuneSpec, folder: Path | None, storage: str | None, raw: dict[str, Any]) -> TuneRun:
        """A new tune directory holding ``tune.json`` (what ``--resume`` and worker processes read)."""
        experiment = tune_spec.spec.experiment
        if folder is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            folder = Path(experiment.output_dir) / f"{experiment.name}-tune-{stamp}"
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise SpecError(f"{str(folder)!r} already holds files: continue a search with recplug tune --resume "
                            f"{folder}, or choose another --out", where="--out")  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        run = cls(folder.resolve(), storage or f"sqlite:///{folder.resolve() / 'study.db'}", experiment.name)
        record_search(run, raw, tune_spec.base_dir)
        return run

    @classmethod
    def open(cls, folder: Path) -> tuple[TuneRun, dict[str, Any], Path | None]:
        """An existing tune directory: the run, the spec it searches and that spec's folder."""
        path = folder / "tune.json"
        if not path.is_file():
            raise SpecError("not a tune directory (no tune.json inside)", where=str(folder))
        try:
            record = json.loads(path.read_text())
            run = cls(folder.resolve(), record["storage"], record["study"])
            return run, record["spec"], Path(record["base_dir"]) if record["base_dir"] else None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise SpecError(f"tune.json is damaged ({exc}); the search cannot be resumed", where=str(path)) from None

    @property
    def local_database(self) -> Path | None:
        return Path(self.storage.removeprefix("sqlite:///")) if self.storage.startswith("sqlite:///") else None

    def claim_lock(self) -> Any:
        """Serialises 'count the trials, then start one' among processes on this machine, so that together they
        finish exactly the requested number (a database on another machine: at most one extra per process)."""
        from filelock import FileLock

        database = self.local_database
        return FileLock(str(database) + ".lock") if database else nullcontext()


def open_study(run: TuneRun, tune_spec: TuneSpec) -> optuna.Study:
    optuna = require_optuna()
    options = tune_spec.options
    if options.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=options.seed, n_startup_trials=max(options.startup_trials, 1))
    else:
        sampler = optuna.samplers.RandomSampler(seed=options.seed)
    pruner: Any = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=options.startup_trials,
                                                      n_warmup_steps=options.warmup_epochs),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=max(options.warmup_epochs, 1)),
        "none": lambda: optuna.pruners.NopPruner(),
    }[options.pruner]()  # fmt: skip
    try:
        with run.claim_lock():
            study = optuna.create_study(storage=run.storage, study_name=run.study_name, direction="maximize",
                                        sampler=sampler, pruner=pruner, load_if_exists=True)  # fmt: skip
            if options.include_spec and not study.get_trials(deepcopy=False):
                own = {k: v for k, v in tune_spec.spec_values().items()
                       if any(p.key == k and p.contains(v) for p in tune_spec.space)}  # fmt: skip
                study.enqueue_trial(own, user_attrs={"spec_configuration": True})
    except Exception as exc:  # a bad URL, an unreachable database, a driver that is not installed
        raise SpecError(f"cannot open the study database: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                        where="--storage") from None  # fmt: skip
    return study


@attrs.frozen(eq=False)
class Workbench:
    """What every trial of one process shares: the data and split are loaded once."""

    tune_spec: TuneSpec
    plugins: PluginManager
    data: Interactions
    split: Split
    device: str


def prepare(tune_spec: TuneSpec, plugins: PluginManager) -> Workbench:
    spec = tune_spec.spec
    seed_everything(spec.experiment.seed)
    device = str(resolve_device(spec.experiment.device))
    context = RunContext(seed=spec.experiment.seed, device=device)
    data = load_dataset(spec, plugins, context)
    return Workbench(tune_spec, plugins, data, make_split(spec.splits[0], data, plugins, context), device)


def work(study: optuna.Study, run: TuneRun, bench: Workbench, deadline: float | None) -> int:
    """Run trials until the study has its trials (or the deadline passes); returns how many ran here."""
    optuna = require_optuna()
    from optuna.trial import TrialState

    wanted, ran = bench.tune_spec.options.trials, 0
    while deadline is None or time.time() < deadline:
        with run.claim_lock():
            _fail_abandoned(study)
            states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
            if len(study.get_trials(deepcopy=False, states=states)) >= wanted:
                break
            trial = study.ask()
            trial.set_user_attr("worker", _worker_id())
        ran += 1
        try:
            value = run_trial(trial, bench)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d pruned", trial.number)
        except TrainingDiverged as exc:  # a configuration that cannot train: recorded, and the search goes on
            trial.set_user_attr("error", str(exc))
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed: %s", trial.number, exc)
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) or broken: the trial runs again on --resume
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        else:
            study.tell(trial, value)
            best = study.best_trial
            log.info("trial %d: validation %s %.4f (best %.4f, trial %d)", trial.number,
                     bench.tune_spec.options.metric, value, best.value, best.number)  # fmt: skip
    return ran


def run_trial(trial: optuna.Trial, bench: Workbench) -> float:
    """Fit the trial's configuration and return its validation metric; prunes through the per-epoch report."""
    optuna = require_optuna()
    tune_spec = bench.tune_spec
    values = {p.key: p.suggest(trial) for p in tune_spec.space}
    log.info("trial %d: %s", trial.number, ", ".join(f"{k}={v!r}" for k, v in values.items()))
    spec = tune_spec.trial_spec(values, bench.plugins)
    rec_spec = next(r for r in spec.recommenders if r.label == tune_spec.recommender)
    measure = f"validation/{tune_spec.options.metric}"
    curve: list[float] = []

    def report(epoch: int, summary: dict[str, float]) -> None:
        curve.append(summary.get(measure, math.nan))
        trial.report(curve[-1], epoch)
        trial.set_user_attr("curve", curve)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    seed_everything(spec.experiment.seed)
    recommender = rec_spec.build(bench.plugins)
    context = RunContext(seed=spec.experiment.seed, device=bench.device, on_epoch=report)
    started = time.perf_counter()
    try:
        recommender.fit(bench.split.train, bench.split.validation, context)
    finally:
        trial.set_user_attr("fit_seconds", round(time.perf_counter() - started, 2))
    value = validation_metric(recommender, bench.data, bench.split, tune_spec.options.metric)
    if not math.isfinite(value):
        raise TrainingDiverged(f"the validation {tune_spec.options.metric} is not a number")
    return value


def validation_metric(recommender: Recommender, data: Interactions, split: Split, metric: str) -> float:
    """``ndcg@10`` or ``hit_rate@10`` on every validation case (full ranking, seen items excluded)."""
    ranked = rank_cases(recommender, data, split.validation, 10)
    values = ranked.ndcgs(10) if metric == "ndcg@10" else ranked.hits(10)
    return float(values.float().mean())


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _fail_abandoned(study: optuna.Study) -> None:
    """Trials left running by a process of this machine that no longer exists (killed) fail and run again."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(trial.user_attrs.get("worker", ""))
        name, _, pid = worker.rpartition(":")
        if name == host and pid.isdigit() and not _alive(int(pid)):
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            log.info("trial %d was abandoned by process %s; it runs again", trial.number, pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@attrs.define
class Signalled:
    signum: int = signal.SIGINT


@contextmanager
def sigterm_as_interrupt() -> Iterator[Signalled]:
    """SIGTERM stops a search like Ctrl-C: the running trial is recorded as failed and will run again."""
    stop = Signalled()

    def interrupt(signum: int, frame: object) -> None:
        stop.signum = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_helpers(run: TuneRun, jobs: int) -> list[subprocess.Popen]:
    """``jobs - 1`` more processes on this study (this process is one of the ``jobs``)."""
    command = [sys.executable, "-m", "recplug", "--quiet", "tune", "--resume", str(run.folder), "--no-final"]
    env = {**os.environ, "RECPLUG_TUNE_THREADS": str(threads_per_job(jobs))}
    return [subprocess.Popen(command, env=env) for _ in range(jobs - 1)]


def stop_helpers(helpers: list[subprocess.Popen]) -> None:
    """Ask the helper processes to stop (their running trials run again on --resume) and wait for them."""
    for helper in helpers:
        if helper.poll() is None:
            helper.send_signal(signal.SIGTERM)
    for helper in helpers:
        helper.wait()


def threads_per_job(jobs: int) -> int:
    return max(1, usable_cores() // jobs)


def run_search(tune_spec: TuneSpec, run: TuneRun, plugins: PluginManager, jobs: int = 1,
               final: bool = True) -> dict[str, Any] | None:  # fmt: skip
    """Work on the study with ``jobs`` processes until it has its trials (or its time is up); then, unless
    ``final`` is false, :func:`finish` it. Ctrl-C or SIGTERM stops every process; ``--resume`` continues."""
    import torch

    threads = os.environ.get("RECPLUG_TUNE_THREADS") or (threads_per_job(jobs) if jobs > 1 else None)
    if threads:
        torch.set_num_threads(int(threads))
    study = open_study(run, tune_spec)
    minutes = tune_spec.options.timeout_minutes
    deadline = time.time() + 60 * minutes if minutes else None
    helpers = start_helpers(run, jobs)
    try:
        with sigterm_as_interrupt() as stop:
            ran = work(study, run, prepare(tune_spec, plugins), deadline)
    except (KeyboardInterrupt, TrainingInterrupted) as exc:
        stop_helpers(helpers)
        signum = exc.exit_code - 128 if isinstance(exc, TrainingInterrupted) else stop.signum
        raise TrainingInterrupted(f"search interrupted; continue it with: recplug tune --resume {run.folder}",
                                  signum) from None  # fmt: skip
    failed = sum(1 for helper in helpers if helper.wait())
    if failed:
        raise SpecError(f"{failed} of the --jobs processes failed (see the log above)", where="tune")
    log.info("this process ran %d trial(s); the study is in %s", ran, run.storage)
    return finish(study, run, tune_spec, plugins) if final else None


# -- the result ------------------------------------------------------------------------------------------------


def finish(study: optuna.Study, run: TuneRun, tune_spec: TuneSpec, plugins: PluginManager) -> dict[str, Any]:
    """Write best.toml, train the best configuration once more and evaluate it on the test cases (once),
    register it with its study, and write summary.json and tune.html."""
    from optuna.trial import TrialState

    from ._tune_report import write_report

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise SpecError("no trial completed, so there is no best configuration (see the log for why)", where="tune")
    best = study.best_trial
    done = run.folder / "summary.json"
    if done.is_file() and json.loads(done.read_text()).get("trial") == best.number:  # a resumed, finished search
        summary = {**json.loads(done.read_text()), "trials": _counts(study)}
        write_report(run.folder / "tune.html", study, tune_spec.options.metric, summary)
        log.info("the best configuration (trial %d) was already tested and registered", best.number)
        return summary
    data = tune_spec.trial_data(best.params)
    (run.folder / "best.toml").write_text(
        f"# The best configuration of study {run.study_name!r} (trial {best.number}, validation "
        f"{tune_spec.options.metric} {best.value:.4f}), written by recplug tune.\n\n" + dumps(data))
    tuning = {
        "recommender": tune_spec.recommender,
        "study": run.study_name,
        "storage": run.storage,
        "trial": best.number,
        "params": best.params,
        "validation": {tune_spec.options.metric: best.value},
        "trials": _counts(study),
    }
    spec = tune_spec.trial_spec(best.params, plugins)
    log.info("training the best configuration (trial %d) once more, for its one test evaluation", best.number)
    result = run_experiment(spec, plugins, run_dir=run.folder / f"best-trial-{best.number}", tuning=tuning)
    summary = {**tuning, "test": [r for r in result.results["rows"] if r["recommender"] == tune_spec.recommender],
               "run_dir": str(result.run_dir), "registered": result.results.get("registered", [])}  # fmt: skip
    (run.folder / "summary.json").write_text(json.dumps(summary, indent=2))
    write_report(run.folder / "tune.html", study, tune_spec.options.metric, summary)
    return summary


def _counts(study: optuna.Study) -> dict[str, int]:
    """How many trials ended in each state (complete, pruned, fail, running)."""
    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    return {state: states.count(state) for state in ("complete", "pruned", "fail", "running") if state in states}


def read_search(path: Path) -> tuple[dict[str, Any], Path]:
    """A spec file's data and its folder (relative paths in it resolve against that folder)."""
    return read_toml(path), path.resolve().parent


def record_search(run: TuneRun, raw: dict[str, Any], base_dir: Path | None) -> None:
    """``tune.json``: the searched spec and the study's place, what ``--resume`` and helper processes read."""
    record = {"spec": raw, "base_dir": str(base_dir) if base_dir else None, "storage": run.storage,
              "study": run.study_name}  # fmt: skip
    tmp = run.folder / ".tune.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(run.folder / "tune.json")
