"""Several instances migrating at once (issue "Three instances behave as one"): the upgrade
runs under a lock, so all of them succeed and one alembic_version row is left at head."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from routing.store.db import alembic_config, downgrade, make_engine, upgrade
from tests.conftest import PG_URL, reset_pg

ROOT = Path(__file__).resolve().parents[2]


def _head(url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


async def _versions(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.scalars(text("SELECT version_num FROM alembic_version"))).all())
    finally:
        await engine.dispose()


async def _upgrade_in_own_engine(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _cli_upgrade(url: str) -> tuple[int, str]:
    env = {**os.environ, "CONTACTBOT_DATABASE_URL": url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "db", "upgrade", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def _to(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
        await downgrade(engine, revision)
    finally:
        await engine.dispose()


def _pg() -> str:
    if not PG_URL:
        pytest.skip("PostgreSQL tests need CONTACTBOT_TEST_PG_URL")
    return PG_URL


@pytest.mark.pg
@pytest.mark.parametrize("start", ["fresh", "0004"])
async def test_three_concurrent_upgrades_on_postgresql(start: str) -> None:
    url = _pg()
    await reset_pg(url)
    if start != "fresh":
        await _to(url, start)
        assert await _versions(url) == [start]
    await asyncio.gather(*(_upgrade_in_own_engine(url) for _ in range(3)))
    assert await _versions(url) == [_head(url)]


@pytest.mark.pg
@pytest.mark.parametrize("start", ["fresh", "0004"])
async def test_three_concurrent_cli_upgrades_on_postgresql(start: str) -> None:
    url = _pg()
    await reset_pg(url)
    if start != "fresh":
        await _to(url, start)
    results = await asyncio.gather(*(_cli_upgrade(url) for _ in range(3)))
    assert [rc for rc, _ in results] == [0, 0, 0], "\n".join(out for _, out in results)
    assert await _versions(url) == [_head(url)]


@pytest.mark.parametrize("start", ["fresh", "0004"])
async def test_three_concurrent_cli_upgrades_on_sqlite(tmp_path: Path, start: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    if start != "fresh":
        await _to(url, start)
    results = await asyncio.gather(*(_cli_upgrade(url) for _ in range(3)))
    assert [rc for rc, _ in results] == [0, 0, 0], "\n".join(out for _, out in results)
    assert await _versions(url) == [_head(url)]
