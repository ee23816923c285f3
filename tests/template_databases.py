"""Databases at the latest schema without running every migration for every test.

A fresh migration to head costs seconds (SQLite about 1 s, PostgreSQL several on a loaded
box), and most tests only need *a database at head*. So each test process migrates one
template for real, on first use, and every later test gets a copy of it:

- SQLite: the template file is copied to the test's path.
- PostgreSQL: the test's database (``<database>``, one per xdist worker) is dropped and
  recreated from ``<database>_tpl`` (``CREATE DATABASE ... TEMPLATE``), a file copy inside
  the server.

The template is rebuilt by every test process (a run never reuses one from an earlier run or
another checkout), so it always holds this tree's migrations. Callers still run ``upgrade``
on the copy: at head it is a no-op, and it keeps the tests on the path the bot takes at start.
Tests about migrations themselves (tests/integration/test_migrations.py,
test_migration_lock.py) migrate for real and do not use these helpers.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from routing.store.db import make_engine, upgrade

_sqlite_template: Path | None = None
# PostgreSQL URLs whose template this process built.
_pg_templates: set[str] = set()


async def migrated_sqlite(path: Path) -> str:
    """A SQLite database at head at ``path`` (which must not exist); returns its URL."""
    global _sqlite_template
    if _sqlite_template is None:
        folder = Path(tempfile.mkdtemp(prefix="contactbot-template-"))
        atexit.register(shutil.rmtree, folder, True)
        template = folder / "template.db"
        engine = make_engine(f"sqlite+aiosqlite:///{template}")
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        _sqlite_template = template
    for suffix in ("", "-wal"):  # the last connection closed checkpoints; a -wal is unlikely
        source = _sqlite_template.with_name(_sqlite_template.name + suffix)
        if source.exists():
            shutil.copyfile(source, path.with_name(path.name + suffix))
    return f"sqlite+aiosqlite:///{path}"


async def _admin(url: str, *statements: str) -> None:
    """Run statements outside any transaction on the server's ``postgres`` database."""
    import asyncpg  # type: ignore[import-untyped]

    admin = make_url(url).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def migrated_pg(url: str) -> None:
    """Make the database of ``url`` a fresh one at head (whatever it held: dropped)."""
    name = make_url(url).database
    assert name, url
    template = f"{name}_tpl"
    if url not in _pg_templates:
        await _admin(
            url,
            f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)',
            f'CREATE DATABASE "{template}"',
        )
        engine = make_engine(make_url(url).set(database=template).render_as_string(False))
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        _pg_templates.add(url)
    # FORCE: a connection a previous test left open (a killed bot's) must not block the drop.
    await _admin(
        url,
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f'CREATE DATABASE "{name}" TEMPLATE "{template}"',
    )
