"""Alembic environment. Run through ``routing.store.db.upgrade`` (or ``contactbot db upgrade``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from routing.store.schema import metadata

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through routing.store.db.upgrade(), which supplies a connection"
    )
_run(connection)
