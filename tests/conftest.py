"""Fixtures for unit tests: generated MovieLens data in the real formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_ml1m


@pytest.fixture
def ml1m_dir(tmp_path: Path) -> Path:
    return write_ml1m(tmp_path / "ml-1m")
