"""The one-trip aiosqlite adapter (routing/store/sqlite_driver.py) behaves as the stock one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError

from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import Customer
from routing.store.sqlite_driver import OneTripCursor

NOW = datetime(2026, 11, 23, tzinfo=UTC)


async def test_one_trip_adapter_results_rowcounts_and_errors(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.cursor(), OneTripCursor)
        async with sessions() as s, s.begin():
            c = Customer(external_id="A", tier="C", created_at=NOW, updated_at=NOW)
            s.add(c)
            await s.flush()
            assert c.id == 1  # lastrowid
            # executemany
            await s.execute(
                insert(Customer),
                [
                    {"external_id": f"X{i}", "tier": "C", "created_at": NOW, "updated_at": NOW}
                    for i in range(5)
                ],
            )
            result = await s.execute(update(Customer).values(tier="B"))
            assert result.rowcount == 6  # type: ignore[attr-defined]
            rows = (await s.execute(select(Customer.external_id).order_by(Customer.id))).all()
            assert [r[0] for r in rows] == ["A", "X0", "X1", "X2", "X3", "X4"]
            assert (await s.execute(text("SELECT 1 WHERE 0"))).first() is None
        with pytest.raises(IntegrityError):
            async with sessions() as s, s.begin():
                s.add(Customer(external_id="A", tier="C", created_at=NOW, updated_at=NOW))
        # The connection is still usable after the failed statement.
        async with sessions() as s:
            assert await s.scalar(select(Customer.tier).where(Customer.external_id == "A")) == "B"
    finally:
        await engine.dispose()
