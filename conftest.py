"""Fixtures shared by tests/ and benchmarks/: plugin managers and the real ML-1M when present."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from recplug._plugin_manager import PluginManager, get_plugin_manager

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def plugins() -> PluginManager:
    """Every installed plugin (bundled ones, the example and the test kit)."""
    return get_plugin_manager()


@pytest.fixture(scope="session")
def toy_plugins() -> PluginManager:
    """The test kit's plugins alone: what core tests run on."""
    manager = PluginManager()
    manager.load_entry_points(only={"testkit"})
    assert manager.of_kind("model"), "the test kit is not installed: pip install -e tests/plugins"
    return manager


REQUIRE_ALL = os.environ.get("RECPLUG_TESTS_REQUIRE_ALL") == "1"
"""Set by .ci/run, which provides the real data and the browser: a test that would skip for their absence fails."""


def skip_or_fail(reason: str) -> None:
    """Skip for a missing resource, or fail when the environment promised every resource (CI)."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason}, but RECPLUG_TESTS_REQUIRE_ALL=1 says it is provided")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_ml1m() -> Path:
    """The real ML-1M folder (RECPLUG_DATA_DIR or ../shared/data); skips when absent (fails in CI)."""
    base = Path(os.environ.get("RECPLUG_DATA_DIR") or SHARED_DATA)
    for folder in (base / "ml-1m", base):
        if (folder / "ratings.dat").is_file() and (folder / "users.dat").is_file():
            return folder
    skip_or_fail(f"real MovieLens-1M not found in {base} (set RECPLUG_DATA_DIR to the folder holding ml-1m/)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def real_movielens() -> Path:
    """The folder holding the real ml-latest-small/ and ml-100k/ (RECPLUG_DATA_DIR or ../shared/data); skips when
    absent (fails in CI)."""
    base = Path(os.environ.get("RECPLUG_DATA_DIR") or SHARED_DATA)
    if (base / "ml-latest-small" / "ratings.csv").is_file() and (base / "ml-100k" / "u.data").is_file():
        return base
    skip_or_fail(f"real ml-latest-small and ml-100k not found in {base} (set RECPLUG_DATA_DIR to their folder)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless chromium (installed by .ci/run); skips when absent (fails in CI)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        skip_or_fail("Debian chromium is not installed (apt-get install chromium)")
    return str(found)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that reads the real data says so with the ``realdata`` marker (``-m "not realdata"`` works)."""
    unmarked = [item.nodeid for item in items
                if {"real_ml1m", "real_movielens"} & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("realdata") is None]
    if unmarked:
        raise pytest.UsageError("tests using real data without @pytest.mark.realdata: " + ", ".join(unmarked))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    """Say how many CUDA tests ran: they are the one kind allowed to skip (no GPU on most machines)."""
    reports = [r for kind in ("passed", "failed", "skipped") for r in terminalreporter.stats.get(kind, [])
               if "test_cuda.py" in r.nodeid and r.when in ("call", "setup") and not (r.when == "setup" and r.passed)]
    if reports:
        ran = sum(1 for r in reports if not r.skipped)
        terminalreporter.write_line(f"CUDA tests: {ran} of {len(reports)} ran" + ("" if ran else " (no CUDA GPU here)"))

@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write to the user's model registry or download cache."""
    base = tmp_path_factory.mktemp("user-dirs")
    monkeypatch.setenv("RECPLUG_REGISTRY", str(base / "registry"))
    monkeypatch.setenv("RECPLUG_CACHE_DIR", str(base / "cache"))


@pytest.fixture
def numba_loops() -> None:
    """The transformer's compiled CPU loops (numba, ``recplug[fast]``), compiled; skips without numba (fails in CI)."""
    from recplug_transformer import cpu_kernels as kernels

    if not kernels.available():
        skip_or_fail("numba is not installed (pip install 'recplug[fast]')")
    kernels.prepare()


@pytest.fixture(params=["compiled", "tensor operations"])
def cpu_kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test twice: with the transformer's compiled CPU loops (numba, ``recplug[fast]``), and with the
    torch and numpy operations they replace when numba is absent."""
    from recplug_transformer import cpu_kernels as kernels

    if request.param == "compiled":
        request.getfixturevalue("numba_loops")
    monkeypatch.setattr(kernels, "available", lambda: request.param == "compiled")
    return str(request.param)
