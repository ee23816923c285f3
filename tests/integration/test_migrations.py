"""Alembic stairway: every revision upgrades, downgrades and upgrades again, on each backend;
and the migrated schema matches the models (no forgotten migration)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from routing.store.db import alembic_config, downgrade, upgrade
from routing.store.schema import metadata
from tests.conftest import Db


def _revisions(url: str) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config(url))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


async def test_stairway(db: Db) -> None:
    revisions = _revisions(db.url)
    assert revisions, "no migrations found"
    await downgrade(db.engine, "base")
    previous = "base"
    for rev in revisions:
        await upgrade(db.engine, rev)
        await downgrade(db.engine, previous)
        await upgrade(db.engine, rev)
        previous = rev


async def test_schema_matches_models(db: Db) -> None:
    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))

    async with db.engine.connect() as conn:
        changes = await conn.run_sync(diff)
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert set(metadata.tables) <= tables
    assert changes == []
