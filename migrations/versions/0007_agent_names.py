"""agent names unique regardless of case (issue "Trust what people type"): a unique index
on lower(name), so that `/transfer ann` can never mean two agents

Existing clashes do not make the upgrade fail: before the index is created, agents whose
names are equal regardless of case (Python's casefold(), which also covers the database's
lower()) keep one name per group and the others are renamed with a numeric suffix,
"Ann" and "ann" becoming "Ann" and "ann (2)". The agent that keeps its name is the active
one, else the oldest (lowest id); the others are renamed in id order, with the first free
suffix (the name is cut to fit the column's 100 characters). Each rename is logged as a
warning ("alembic.runtime.migration"). The downgrade drops the index and keeps the names.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME_LENGTH = 100
log = logging.getLogger("alembic.runtime.migration")


def renames(rows: Sequence[tuple[int, str, bool]]) -> dict[int, str]:
    """New names for the agents (id, name, active) whose names clash regardless of case."""
    ordered = sorted(rows, key=lambda r: (not r[2], r[0]))  # active first, then oldest
    keepers: dict[str, int] = {}
    for agent_id, name, _active in ordered:
        keepers.setdefault(name.casefold(), agent_id)
    # A rename never takes a name that an agent keeps, nor another rename's.
    taken = set(keepers)
    out: dict[int, str] = {}
    for agent_id, name, _active in sorted(rows):
        if keepers[name.casefold()] == agent_id:
            continue
        n = 2
        while True:
            suffix = f" ({n})"
            candidate = name[: _NAME_LENGTH - len(suffix)] + suffix
            if candidate.casefold() not in taken:
                break
            n += 1
        taken.add(candidate.casefold())
        out[agent_id] = candidate
    return out


def upgrade() -> None:
    bind = op.get_bind()
    agents = sa.table(
        "agents",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("active", sa.Boolean),
    )
    rows = [
        (int(r.id), str(r.name), bool(r.active))
        for r in bind.execute(sa.select(agents.c.id, agents.c.name, agents.c.active))
    ]
    for agent_id, new in sorted(renames(rows).items()):
        old = next(name for i, name, _ in rows if i == agent_id)
        log.warning(
            "agent %d: renamed %r to %r (agent names are now unique regardless of case)",
            agent_id,
            old,
            new,
        )
        bind.execute(agents.update().where(agents.c.id == agent_id).values(name=new))
    op.create_index("uq_agents_name_lower", "agents", [sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_agents_name_lower", table_name="agents")
