"""Fixtures shared by tests/ and benchmarks/: plugin managers and the real ML-1M when present."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def real_ml1m() -> Path:
    """The real ML-1M folder (RECPLUG_DATA_DIR or ../shared/data); skips when absent."""
    base = Path(os.environ.get("RECPLUG_DATA_DIR") or SHARED_DATA)
    for folder in (base / "ml-1m", base):
        if (folder / "ratings.dat").is_file() and (folder / "users.dat").is_file():
            return folder
    pytest.skip(f"real MovieLens-1M not found in {base} (set RECPLUG_DATA_DIR to the folder holding ml-1m/)")




@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write to the user's model registry or download cache."""
    base = tmp_path_factory.mktemp("user-dirs")
    monkeypatch.setenv("RECPLUG_REGISTRY", str(base / "registry"))
    monkeypatch.setenv("RECPLUG_CACHE_DIR", str(base / "cache"))
