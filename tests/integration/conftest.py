"""Fixtures shared by the integration tests: ``cli_env`` for tests that call the CLI in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean CLI environment: no CONTACTBOT_* setting from outside, the database a fresh
    SQLite file (``cli.db``), the working directory ``tmp_path`` (returned)."""
    for key in list(os.environ):
        if key.startswith("CONTACTBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CONTACTBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cli_db_url(cli_env: Path) -> str:
    """The database URL ``cli_env`` set, for a test that seeds the database itself."""
    return os.environ["CONTACTBOT_DATABASE_URL"]
