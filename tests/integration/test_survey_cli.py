"""``contactbot surveys status [--campaign KEY]``: progress of a running campaign."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.cli import main
from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import Customer, Survey, SurveyCampaign

T = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
KEY = "nps:C:20261102T1200Z"


async def _seed(url: str) -> None:
    engine = make_engine(url)
    await upgrade(engine)
    async with make_sessionmaker(engine)() as s, s.begin():
        s.add(
            SurveyCampaign(
                key=KEY, kind="nps", tier="C", fire_at=T, sample_ratio=0.5, created_at=T,
                finished_at=T, surveys=8,
            )
        )  # fmt: skip
        rows: list[tuple[str, int | None]] = [
            ("sent", 0), ("sent", 1), ("answered", 2), ("answered", 3), ("expired", 4),
            ("scheduled", None), ("sending", None), ("failed", None), ("skipped", None),
        ]  # fmt: skip
        for i, (status, second) in enumerate(rows):
            c = Customer(external_id=f"K{i}", telegram_id=i + 1, tier="C", created_at=T,
                         updated_at=T)  # fmt: skip
            s.add(c)
            await s.flush()
            s.add(
                Survey(
                    kind="nps", customer_id=c.id, campaign=KEY, status=status, due_at=T,
                    created_at=T, sent_at=None if second is None else T + timedelta(seconds=second),
                )
            )  # fmt: skip
        # A CSAT outside the campaign: counted in the overall figures only.
        s.add(Survey(kind="csat", customer_id=c.id, status="scheduled", due_at=T, created_at=T))
    await engine.dispose()


def test_surveys_status_for_a_campaign_and_overall(
    cli_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_seed(cli_db_url))
    assert main(["surveys", "status", "--campaign", KEY]) == 0
    out = capsys.readouterr().out
    # sent (delivered) 5, answered 2, pending 2, failed 1, skipped 1, 2/5 answered, 4 gaps in 4 s
    row = next(line for line in out.splitlines() if "40.0%" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")] == [
        "5", "2", "2", "1", "1", "40.0%", "1.0 msg/s",
    ]  # fmt: skip
    assert "by status: answered 2, expired 1, failed 1, scheduled 1, sending 1" in out

    assert main(["surveys", "status"]) == 0
    out = capsys.readouterr().out
    assert "Surveys: all (10)" in out and KEY in out and "Campaign runs" in out

    assert main(["surveys", "status", "--campaign", "nps:C:nope"]) == 1
    assert "no surveys in campaign 'nps:C:nope'" in capsys.readouterr().err
