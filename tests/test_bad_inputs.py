"""What a careless or hostile input does: one clear error naming the place, exit 2, nothing lost or escaped.

Core tests: the test kit's plugins only. Each case is a class of input listed in docs/reliability.rst.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import TESTKIT_ENV, run_cli, to_toml, toy_spec, write_spec
from recplug._errors import DataError, SpecError
from recplug._model_registry import ModelRegistry, RegistryError
from recplug._runner import run_experiment
from recplug._spec import parse_spec
from recplug._training import TrainingDiverged


def one_error(result: subprocess.CompletedProcess, fragment: str, code: int = 2) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("recplug: error: ")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


def _set(section: str, key: str, value: object):
    def change(data: dict) -> None:
        data[section][key] = value

    return change


def _rename(section: str, old: str, new: str):
    def change(data: dict) -> None:
        data[section][new] = {"use": old, **data[section].pop(old)}

    return change


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (_set("experiment", "name", "../escape"), "experiment.name"),
        (_set("experiment", "name", "/abs"), "experiment.name"),
        (lambda data: data["recommenders"]["bigram"].update(register_as="../../escape"), "recommenders.bigram.register_as"),
        (_rename("recommenders", "counts", "../up"), "recommenders.../up"),
        (_rename("splits", "holdout", "a/b"), "splits.a/b"),
    ],
)
def test_names_that_become_paths_are_checked_when_the_spec_is_read(toy_plugins, change, where: str) -> None:
    data = toy_spec()
    change(data)
    with pytest.raises(SpecError, match="invalid") as info:
        parse_spec(data, toy_plugins)
    assert info.value.where == where


def test_an_escaping_name_on_the_command_line_trains_nothing(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.toml", to_toml(toy_spec(registry=tmp_path / "registry")))
    result = run_cli("run", str(spec), "--set", "experiment.name=../escape", env=TESTKIT_ENV, cwd=tmp_path)
    one_error(result, "experiment.name: invalid experiment name '../escape'")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "runs").exists()


def test_an_alias_pointing_outside_the_registry_is_a_damaged_entry(toy_plugins, tmp_path: Path) -> None:
    run_experiment(parse_spec(toy_spec("t", registry=tmp_path / "registry"), toy_plugins), toy_plugins,
                   run_dir=tmp_path / "run")  # fmt: skip
    aliases = tmp_path / "registry" / "t-bigram" / "aliases.json"
    registry = ModelRegistry(tmp_path / "registry")
    for damage in ['{"production": "../../.."}', '{"production": 7}', '["production"]', "{not json"]:
        aliases.write_text(damage)
        with pytest.raises(RegistryError, match="aliases.json is damaged"):
            registry.load("t-bigram@production")
    result = run_cli("models", "list", env={"RECPLUG_REGISTRY": str(tmp_path / "registry"), **TESTKIT_ENV})
    one_error(result, "aliases.json is damaged")
    aliases.write_text('{"production": 1}')
    hint = run_cli("recommend", "t-bigram@1", "--user", "1", env={"RECPLUG_REGISTRY": str(tmp_path / "registry"),
                                                                   **TESTKIT_ENV})  # fmt: skip
    one_error(hint, "for version 1 write t-bigram:1")


@pytest.mark.parametrize(
    ("training", "fragment"),
    [
        ({"max_steps_per_epoch": -5}, "'max_steps_per_epoch' must be >= 1"),
        ({"patience": -1}, "'patience' must be >= 1"),
        ({"betas": [2.0, 0.999]}, "'betas' must be two numbers in [0, 1)"),
        ({"threads": -1}, "'threads' must be >= 1"),
        ({"grad_clip": 0.0}, "'grad_clip' must be > 0"),
        ({"batch_size": 10**9}, "'batch_size' must be <= 16777216"),
    ],
)
def test_training_ranges_are_checked_when_the_spec_is_read(toy_plugins, training: dict, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(toy_spec(training=training), toy_plugins)
    assert fragment in info.value.message and info.value.where.startswith("recommenders.bigram.training.")


def test_seed_must_not_be_negative(toy_plugins) -> None:
    data = toy_spec()
    data["experiment"]["seed"] = -1
    with pytest.raises(SpecError, match="'seed' must be >= 0"):
        parse_spec(data, toy_plugins)


def test_two_recommenders_may_not_register_under_one_name(toy_plugins) -> None:
    data = toy_spec()
    data["recommenders"]["bigram"]["register_as"] = "same"
    data["recommenders"]["other"] = {"use": "bigram", "register_as": "same"}
    with pytest.raises(SpecError, match="registers as 'same', like recommenders.bigram") as info:
        parse_spec(data, toy_plugins)
    assert info.value.where == "recommenders.other.register_as"


def test_monitoring_a_loss_the_model_does_not_have_is_refused(toy_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    from recplug_testkit import Bigram

    from recplug._training import Model

    monkeypatch.setattr(Bigram, "validation_examples", Model.validation_examples)  # a model without them
    with pytest.raises(SpecError, match="monitor = 'loss' needs validation examples") as info:
        parse_spec(toy_spec(training={"monitor": "loss"}), toy_plugins)
    assert info.value.where == "recommenders.bigram.training.monitor"
    assert parse_spec(toy_spec(), toy_plugins).recommenders[1].training.monitor == "auto"  # picks NDCG@10 then


def test_auto_monitor_without_a_validation_loss_keeps_learning(toy_plugins, tmp_path: Path, monkeypatch) -> None:
    """Before, the NaN loss never improved and the first epoch's weights came back: 3 epochs = 1 epoch."""
    from recplug_testkit import Bigram

    from recplug._training import Model

    monkeypatch.setattr(Bigram, "validation_examples", Model.validation_examples)
    one = run_experiment(parse_spec(toy_spec(training={"epochs": 1}), toy_plugins), toy_plugins, run_dir=tmp_path / "1")
    three = run_experiment(parse_spec(toy_spec(), toy_plugins), toy_plugins, run_dir=tmp_path / "3")
    weights = [next(f for f in r.fitted if f.spec.kind == "model").recommender.state_dict() for r in (one, three)]
    assert any(not (weights[0][k] == weights[1][k]).all() for k in weights[0])


def test_a_diverged_validation_measure_is_an_error(toy_plugins, tmp_path: Path, monkeypatch) -> None:
    import torch
    from recplug_testkit import Bigram

    monkeypatch.setattr(Bigram, "loss", lambda self, batch: self.module(batch["items"][:, -1]).sum() * torch.nan)
    with pytest.raises(TrainingDiverged, match="validation loss is not a number after epoch 1"):
        run_experiment(parse_spec(toy_spec(baseline=False), toy_plugins), toy_plugins, run_dir=tmp_path / "run")


def test_a_split_without_test_cases_is_an_error_before_any_work(tmp_path: Path) -> None:
    from recplug.api import PluginManager

    data = toy_spec(toy={"users": 3, "length": 3})
    data["splits"] = {"loo": {"use": "leave_one_out", "min_interactions": 4}}
    plugins = PluginManager()
    plugins.load_entry_points(only={"testkit", "splits"})
    with pytest.raises(DataError, match="no user has a test case") as info:
        run_experiment(parse_spec(data, plugins), plugins, run_dir=tmp_path / "run")
    assert info.value.where == "splits.loo" and not (tmp_path / "run").exists()


def test_a_sample_of_no_validation_users_is_refused_when_the_spec_is_read() -> None:
    from recplug.api import PluginManager

    data = toy_spec()
    data["splits"] = {"loo": {"use": "leave_one_out", "validation_users": 0}}
    plugins = PluginManager()
    plugins.load_entry_points(only={"testkit", "splits"})
    with pytest.raises(SpecError, match="'validation_users' must be >= 1") as info:
        parse_spec(data, plugins)
    assert info.value.where == "splits.loo.validation_users"


def test_out_never_overwrites_a_run_without_being_asked(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.toml", to_toml(toy_spec(registry=tmp_path / "registry", training={"epochs": 1})))
    out = tmp_path / "run"
    assert run_cli("run", str(spec), "--out", str(out), env=TESTKIT_ENV).returncode == 0
    before = (out / "results.json").read_text()
    again = run_cli("run", str(spec), "--out", str(out), env=TESTKIT_ENV)
    one_error(again, "already holds a finished run")
    assert (out / "results.json").read_text() == before
    replaced = run_cli("run", str(spec), "--out", str(out), "--overwrite", env=TESTKIT_ENV)
    assert replaced.returncode == 0, replaced.stderr
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_error(run_cli("run", str(spec), "--out", str(a_file), env=TESTKIT_ENV), "is a file, not a folder")
    one_error(run_cli("run", str(spec), "--set", f'experiment.output_dir="{a_file}"', env=TESTKIT_ENV),
              "experiment.output_dir: ")  # fmt: skip


def test_resume_refuses_a_second_spec_and_a_damaged_spec_json(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.toml", to_toml(toy_spec(registry=tmp_path / "registry", training={"epochs": 1})))
    out = tmp_path / "run"
    assert run_cli("run", str(spec), "--out", str(out), env=TESTKIT_ENV).returncode == 0
    one_error(run_cli("run", str(spec), "--resume", str(out), env=TESTKIT_ENV), "not both")
    (out / "spec.json").write_text("{truncated")
    one_error(run_cli("run", "--resume", str(out), env=TESTKIT_ENV), "spec.json is damaged")


def test_set_with_an_empty_key_part_names_set(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.toml", to_toml(toy_spec()))
    result = run_cli("run", str(spec), "--set", "recommenders..tf.x=1", env=TESTKIT_ENV)
    one_error(result, "--set: 'recommenders..tf.x' has an empty part")


def test_recommend_output_paths_are_checked(toy_plugins, tmp_path: Path) -> None:
    run_experiment(parse_spec(toy_spec("t", registry=tmp_path / "registry"), toy_plugins), toy_plugins,
                   run_dir=tmp_path / "run")  # fmt: skip
    env = {"RECPLUG_REGISTRY": str(tmp_path / "registry"), **TESTKIT_ENV}
    one_error(run_cli("recommend", "t-bigram", "--user", "1", "--posters", str(tmp_path / "nope"), env=env),
              "--posters")  # fmt: skip
    one_error(run_cli("recommend", "t-bigram", "--user", "1", "--report", str(tmp_path / "no" / "r.html"), env=env),
              "--report")  # fmt: skip
    one_error(run_cli("recommend", "t-bigram", "--user", "1", "--report", str(tmp_path), env=env), "--report")


def test_a_closed_pipe_is_not_a_traceback(toy_plugins, tmp_path: Path) -> None:
    run_experiment(parse_spec(toy_spec("t", registry=tmp_path / "registry"), toy_plugins), toy_plugins,
                   run_dir=tmp_path / "run")  # fmt: skip
    env = {**os.environ, "RECPLUG_REGISTRY": str(tmp_path / "registry"), **TESTKIT_ENV}
    shown = subprocess.run(f"{sys.executable} -m recplug models show t-bigram --json | head -1", shell=True,
                           capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert shown.stdout.strip() == "{" and "Traceback" not in shown.stderr and "Error" not in shown.stderr


def test_models_show_prints_a_model_card(toy_plugins, tmp_path: Path) -> None:
    run_experiment(parse_spec(toy_spec("t", registry=tmp_path / "registry"), toy_plugins), toy_plugins,
                   run_dir=tmp_path / "run")  # fmt: skip
    env = {"RECPLUG_REGISTRY": str(tmp_path / "registry"), **TESTKIT_ENV}
    card = run_cli("models", "show", "t-bigram", env=env).stdout
    assert card.startswith("t-bigram:1") and "model     bigram from recplug-testkit 1.0.0" in card
    assert "protocol  holdout, 30 test cases" in card and "hits      @1 " in card and "training  3 epochs" in card
    assert len(card.splitlines()) < 15
    assert json.loads(run_cli("models", "show", "t-bigram", "--json", env=env).stdout)["name"] == "t-bigram"


def test_a_plugin_warning_names_the_plugin() -> None:
    import recplug_testkit

    from recplug import cli
    from recplug._plugin_manager import get_plugin_manager

    get_plugin_manager()  # the plugins the command line loads, the test kit among them
    warning = cli._format_warning("careful", UserWarning, recplug_testkit.__file__, 1)
    assert warning == "recplug: warning: [plugin testkit] careful\n"
    assert cli._format_warning("careful", UserWarning, cli.__file__, 1) == "recplug: warning: careful\n"


def test_deleting_a_version_while_it_loads_is_a_clear_error(toy_plugins, tmp_path: Path, monkeypatch) -> None:
    import recplug._model_registry as model_registry

    run_experiment(parse_spec(toy_spec("t", registry=tmp_path / "registry"), toy_plugins), toy_plugins,
                   run_dir=tmp_path / "run")  # fmt: skip
    registry = ModelRegistry(tmp_path / "registry")
    original = model_registry._read_vocab

    def delete_then_read(folder: Path):
        registry.delete("t-bigram:1")  # another process deletes it between two reads
        return original(folder)

    monkeypatch.setattr(model_registry, "_read_vocab", delete_then_read)
    with pytest.raises(RegistryError, match="t-bigram:1 was deleted while it was being loaded"):
        registry.load("t-bigram:1", toy_plugins)


def test_registry_options_that_do_not_fit_the_weights_are_one_error(toy_plugins, tmp_path: Path) -> None:
    from recplug._model_registry import _write_entry

    run_experiment(parse_spec(toy_spec("t", registry=tmp_path / "registry"), toy_plugins), toy_plugins,
                   run_dir=tmp_path / "run")  # fmt: skip
    path = tmp_path / "registry" / "t-bigram" / "1" / "entry.json"
    entry = json.loads(path.read_text())
    entry["options"]["dim"] = 9  # checksum-valid, but not what the weights hold
    _write_entry(path, entry)
    with pytest.raises(RegistryError, match="the weights do not fit the recorded options"):
        ModelRegistry(tmp_path / "registry").load("t-bigram", toy_plugins)
    entry["options"]["dim"] = 10**9  # absurd: refused by the options' own validation, before anything is built
    _write_entry(path, entry)
    with pytest.raises(RegistryError, match="'dim' must be <="):
        ModelRegistry(tmp_path / "registry").load("t-bigram", toy_plugins)


@pytest.mark.slow
def test_sigterm_checkpoints_the_step_and_exits_143(tmp_path: Path) -> None:
    data = toy_spec("k", registry=tmp_path / "registry", training={"epochs": 30, "batch_size": 4},
                    toy={"users": 400, "length": 40}, baseline=False)  # fmt: skip
    spec = write_spec(tmp_path / "s.toml", to_toml(data))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", **TESTKIT_ENV}
    process = subprocess.Popen([sys.executable, "-m", "recplug", "run", str(spec), "--out", str(out)],
                               stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:
        if "epoch 1/30" in line:  # the first epoch's summary: training is under way
            break
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 143, rest
    assert "checkpoint saved" in rest and "Traceback" not in rest
    import torch

    state = torch.load(out / "holdout" / "bigram" / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert state["step_in_epoch"] > 0  # the exact step, mid-epoch
