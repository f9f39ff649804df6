"""Plugins register through the 'recplug' entry-point group; broken ones are reported and skipped."""

from __future__ import annotations

import json
import textwrap
import types
from pathlib import Path

import pytest
import torch

from helpers import run_cli, write_ml1m, write_spec
from recplug import _hookspecs as hookspecs
from recplug._errors import PluginError
from recplug._plugin_manager import PluginManager, PluginWarning
from recplug.api import Baseline, hookimpl

TINY_PLUGIN = '''
import attrs, torch

from recplug.api import Baseline, Metric, hookimpl

@attrs.frozen
class LastItemOptions:
    boost: float = 1.0

class Reverse(Baseline):
    """Recommends items with the highest token first (a tiny third-party baseline)."""
    def fit(self, train, validation, context):
        self.n_items = train.data.n_items
    def score(self, users, histories):
        return torch.arange(self.n_items, dtype=torch.float32).expand(len(users), -1) * self.options.boost

class Always1(Metric):
    """A metric that is always one."""
    def compute(self, ranked, k):
        return 1.0

@hookimpl
def register_components(register):
    register.baseline("reverse", Reverse, LastItemOptions)
    register.metric("always_one", Always1)
'''


def install_plugin(site: Path, module: str, source: str, dist: str = "tiny-plugin", version: str = "0.3.1") -> None:
    """Make ``module`` importable from ``site`` with a dist-info that declares the entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[recplug]\n{module} = {module}\n")


def test_third_party_plugin_is_listed_and_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_plugin(site, "tiny_plugin", TINY_PLUGIN)
    env = {"PYTHONPATH": str(site)}
    listed = run_cli("plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(listed.stdout)["components"]}
    assert rows[("baseline", "reverse")]["distribution"] == "tiny-plugin"
    assert rows[("baseline", "reverse")]["version"] == "0.3.1"
    assert rows[("dataset", "movielens")]["distribution"] == "recplug"  # built-ins register the same way

    data = write_ml1m(tmp_path / "ml-1m")
    spec = write_spec(tmp_path / "s.toml", f"""
        [dataset.movielens]
        data_dir = "{data}"
        [recommenders.reverse]
        boost = 2.0
        [evaluation]
        metrics = ["always_one", "hit_rate"]
        ks = [5]
    """.replace("        ", ""))
    result = run_cli("run", str(spec), "--out", str(tmp_path / "run"), env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert {(r["recommender"], r["metric"], r["value"]) for r in rows if r["metric"] == "always_one"} == {
        ("reverse", "always_one", 1.0)
    }


def test_plugin_that_fails_to_import_is_skipped(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_plugin(site, "broken_plugin", "raise RuntimeError('boom')\n", dist="broken-plugin")
    result = run_cli("plugins", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0
    assert "plugin 'broken_plugin' skipped: failed to import 'broken_plugin' from broken-plugin: RuntimeError: boom" in result.stderr
    assert "Traceback" not in result.stderr
    assert "movielens" in result.stdout


def test_restrict_plugins_by_environment(tmp_path: Path) -> None:
    result = run_cli("plugins", "--json", env={"RECPLUG_PLUGINS": "movielens,splits"})
    kinds = {r["kind"] for r in json.loads(result.stdout)["components"]}
    assert kinds == {"dataset", "splitter"}


class Good(Baseline):
    """Good."""

    def fit(self, train, validation, context) -> None: ...

    def score(self, users, histories) -> torch.Tensor: ...


def make_plugin(register_body) -> types.SimpleNamespace:
    @hookimpl
    def register_components(register) -> None:
        register_body(register)

    return types.SimpleNamespace(register_components=register_components)


def test_duplicate_names_keep_the_first_and_warn() -> None:
    manager = PluginManager()
    manager.register_plugin(make_plugin(lambda r: r.baseline("good", Good)), "first")
    with pytest.warns(PluginWarning, match="baseline name 'good' is already registered by plugin 'first'"):
        manager.register_plugin(make_plugin(lambda r: r.baseline("good", Good)), "second")
    assert manager.get("baseline", "good").plugin == "first"


def test_registration_errors_are_reported_per_plugin() -> None:
    manager = PluginManager()
    with pytest.warns(PluginWarning, match="must subclass recplug Metric"):
        manager.register_plugin(make_plugin(lambda r: r.metric("m", Good)), "wrongkind")
    with pytest.warns(PluginWarning, match="raised ZeroDivisionError"):
        manager.register_plugin(make_plugin(lambda r: 1 / 0), "raises")
    with pytest.warns(PluginWarning, match="options of baseline 'x' must be an attrs class"):
        manager.register_plugin(make_plugin(lambda r: r.baseline("x", Good, dict)), "badoptions")
    assert manager.components == {}


def test_incompatible_plugin_api_version_is_refused() -> None:
    plugin = make_plugin(lambda r: r.baseline("good", Good))
    plugin.RECPLUG_PLUGIN_API = hookspecs.PLUGIN_API_VERSION + 1
    manager = PluginManager()
    with pytest.warns(PluginWarning, match=f"built for plugin API {hookspecs.PLUGIN_API_VERSION + 1}"):
        manager.register_plugin(plugin, "future", "future-plugin", "9.0")
    assert manager.components == {}


def test_unknown_component_lists_registered_names(plugins) -> None:
    with pytest.raises(PluginError, match=r"unknown metric 'ndgc'; did you mean 'ndcg'\? \(registered metrics: "):
        plugins.get("metric", "ndgc")


def test_every_hook_is_documented_and_tested() -> None:
    """Each hookspec has a docstring and is exercised by name in this test suite."""
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    hooks = [name for name in dir(hookspecs) if getattr(getattr(hookspecs, name), "recplug_spec", None) is not None]
    assert hooks == ["register_components"]
    for name in hooks:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"hook {name} has no docstring"
        assert f"def {name}(" in tests, f"hook {name} is not exercised by a test plugin"
