"""UtcDateTime's fused SQLite bind: the same text as SQLAlchemy's own processing chain."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import TypeDecorator
from sqlalchemy.dialects import postgresql, sqlite

from routing.store.base import UtcDateTime, sqlite_text


def _stock(dialect: object) -> object:
    """SQLAlchemy's chain for the column type: TypeDecorator's wrapper around
    ``process_bind_param`` and the dialect's DATETIME processing."""
    impl = UtcDateTime().dialect_impl(dialect)  # type: ignore[arg-type]
    return TypeDecorator.bind_processor(impl, dialect)  # type: ignore[arg-type]


def _samples() -> list[datetime]:
    rng = random.Random(1)
    # timezone(timedelta(0), "Z"): UTC, but not the UTC object.
    zones = [UTC, timezone(timedelta(0), "Z"), timezone(timedelta(hours=5, minutes=30))]
    zones.append(timezone(-timedelta(hours=8)))
    out = [
        datetime(5, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(9999, 12, 31, tzinfo=UTC),
        datetime(2026, 12, 3, 11, 0, tzinfo=UTC),  # no microseconds: still six digits
    ]
    start = datetime(1900, 1, 1, tzinfo=UTC)
    for _ in range(3000):
        value = start + timedelta(microseconds=rng.randrange(10**17))
        out.append(value.astimezone(rng.choice(zones)))
    return out


def test_sqlite_bind_is_sqlalchemys_text() -> None:
    dialect = sqlite.dialect()
    fused = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    stock = _stock(dialect)
    assert fused is not None and callable(stock)
    for value in _samples():
        assert fused(value) == stock(value), value
        assert sqlite_text(value.astimezone(UTC)) == stock(value)
    assert fused(None) is None


def test_sqlite_bind_refuses_a_naive_datetime() -> None:
    dialect = sqlite.dialect()
    fused = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert fused is not None
    with pytest.raises(ValueError, match="naive datetime"):
        fused(datetime(2026, 1, 1))


def test_other_dialects_keep_the_stock_chain() -> None:
    dialect = postgresql.dialect()
    got = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    value = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert got is not None
    assert got(value) == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_sqlite_bind_is_one_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path binds several datetimes an update: on SQLite none goes through the
    TypeDecorator chain (process_bind_param, then DATETIME's formatting), issue 19."""

    def chain(*_args: object) -> None:
        raise AssertionError("the stock chain ran")

    monkeypatch.setattr(UtcDateTime, "process_bind_param", chain)
    dialect = sqlite.dialect()
    fused = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert fused is not None
    assert fused(datetime(2026, 12, 3, 11, tzinfo=UTC)) == "2026-12-03 11:00:00.000000"
