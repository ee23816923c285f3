"""``routing.reports``: every figure of a known history (tests/integration/report_history.py),
on SQLite and PostgreSQL. Each expected number is worked out from the seeded rows."""

from __future__ import annotations

from typing import Any

import pytest

from routing.policy.root import Policy
from routing.reports.build import build
from routing.reports.export import to_dict
from routing.reports.period import Period
from tests.conftest import Db
from tests.integration.report_history import NOW, SINCE, UNTIL, seed


def durations(count: int, p50: float | None, p90: float | None, top: float | None,
              mean: float | None) -> dict[str, Any]:  # fmt: skip
    return {"count": count, "p50": p50, "p90": p90, "max": top, "mean": mean}


NONE = durations(0, None, None, None, None)


def sla(met: int, missed: int, unjudged: int, share: float | None) -> dict[str, Any]:
    return {"met": met, "missed": missed, "unjudged": unjudged, "share": share}


def csat(sent: int, answered: int, rate: float | None, average: float | None) -> dict[str, Any]:
    return {"sent": sent, "answered": answered, "response_rate": rate, "average": average}


def nps(promoters: int, passives: int, detractors: int, score: float | None) -> dict[str, Any]:
    return {"answered": promoters + passives + detractors, "promoters": promoters,
            "passives": passives, "detractors": detractors, "score": score}  # fmt: skip


def deflection(resolved: int, expired: int, handoff: int, abandoned: int, live: int,
               rate: float | None) -> dict[str, Any]:  # fmt: skip
    ended = resolved + expired + handoff + abandoned
    return {"ended": ended, "resolved": resolved, "expired": expired, "handoff": handoff,
            "abandoned": abandoned, "live": live, "deflected": resolved + expired,
            "rate": rate}  # fmt: skip


def complaints(opened: int, resolved: int, breached: int) -> dict[str, int]:
    return {"opened": opened, "resolved": resolved, "breached": breached}


@pytest.fixture
async def figures(db: Db) -> dict[str, Any]:
    async with db.sessions() as s, s.begin():
        await seed(s)
    async with db.sessions() as s, s.begin():
        report = await build(s, Policy(), Period(SINCE, UNTIL, NOW))
    return to_dict(report)


async def test_overall(figures: dict[str, Any]) -> None:
    o = figures["overall"]
    assert figures["period"] == {"since": "2026-11-01T00:00:00Z", "until": "2026-11-08T00:00:00Z",
                                 "generated_at": "2026-11-10T12:00:00Z"}  # fmt: skip
    # c1..c8 (c9 queued a second before SINCE, c10 at UNTIL: out).
    assert (o["conversations"], o["answered"], o["open"], o["closed"]) == (8, 5, 2, 6)
    # c4 (in the queue) and c5 (held by Bob) closed without an agent message: 2 of 8.
    assert (o["abandoned"], o["abandoned_in_queue"], o["abandonment_rate"]) == (2, 1, 0.25)
    # Waits 30, 50, 120, 300, 600: p50 120; p90 at rank 3.6: 300 + 0.6 x 300 = 480.
    assert o["wait_seconds"] == durations(5, 120.0, 480.0, 600.0, 220.0)
    # Met: c1, c3 (exactly 300 s), c8. Missed: c2, c5, c6, c7. Not judged: c4 (left at 600 s
    # of 900).
    assert o["sla_first_response"] == sla(3, 4, 1, 0.428571)
    # Met: c1, c3. Missed: c2, c8 (closed late), c6, c7 (open past the target). Not judged:
    # c4, c5 (abandoned before the target).
    assert o["sla_resolution"] == sla(2, 4, 2, 0.333333)
    # Handle (close - assigned): 2380, 7140, 3420, 5400, 5390.
    assert o["handle_seconds"] == durations(5, 5390.0, 6444.0, 7140.0, 4746.0)
    # Resolution (close - queued, answered chats): 2400, 7200, 3600, 5400.
    assert o["resolution_seconds"] == durations(4, 4500.0, 6660.0, 7200.0, 4650.0)
    # CSAT sent for c1, c2, c3, c5, c8 (c4's skipped); answered 5, 2, 3, 4.
    assert o["csat"] == csat(5, 4, 0.8, 3.5)
    # NPS in the period: 10 and 9 promoters, 8 passive, 6 and 3 detractors.
    assert o["nps"] == nps(2, 1, 2, 0.0)
    # Resolved x2 (C), expired (B, quiet after an answer), handoff, abandoned (B), live (C).
    assert o["deflection"] == deflection(2, 1, 1, 1, 1, 0.6)
    # Opened k1, k2; resolved k1, k3; breached k1 (twice: counted once), k3.
    assert o["complaints"] == complaints(2, 2, 2)


async def test_by_tier(figures: dict[str, Any]) -> None:
    tiers = {g["name"]: g for g in figures["tiers"]}
    assert list(tiers) == ["VIP", "A", "B", "C"]
    vip, a, b, c = tiers["VIP"], tiers["A"], tiers["B"], tiers["C"]
    assert (vip["conversations"], vip["answered"], vip["abandoned"]) == (3, 3, 0)
    assert vip["wait_seconds"] == durations(3, 50.0, 106.0, 120.0, 66.666667)
    assert vip["sla_first_response"] == sla(2, 1, 0, 0.666667)
    assert vip["sla_resolution"] == sla(1, 2, 0, 0.333333)
    assert vip["handle_seconds"] == durations(3, 5390.0, 6790.0, 7140.0, 4970.0)
    assert vip["resolution_seconds"] == durations(3, 5400.0, 6840.0, 7200.0, 5000.0)
    assert vip["csat"] == csat(3, 3, 1.0, 3.666667)
    assert vip["nps"] == nps(1, 0, 1, 0.0)
    assert vip["deflection"] == deflection(0, 0, 0, 0, 0, None)
    assert vip["complaints"] == complaints(1, 1, 1)

    assert (a["conversations"], a["answered"], a["open"], a["abandoned"]) == (2, 2, 1, 0)
    assert a["wait_seconds"] == durations(2, 450.0, 570.0, 600.0, 450.0)
    assert a["sla_first_response"] == sla(1, 1, 0, 0.5)
    assert a["sla_resolution"] == sla(1, 1, 0, 0.5)
    assert a["handle_seconds"] == durations(1, 3420.0, 3420.0, 3420.0, 3420.0)
    assert a["resolution_seconds"] == durations(1, 3600.0, 3600.0, 3600.0, 3600.0)
    assert a["csat"] == csat(1, 0, 0.0, None)
    assert a["nps"] == nps(1, 1, 0, 50.0)
    assert a["complaints"] == complaints(0, 1, 1)

    assert (b["conversations"], b["abandoned"], b["abandoned_in_queue"]) == (1, 1, 1)
    assert b["abandonment_rate"] == 1.0
    assert b["wait_seconds"] == NONE
    assert b["sla_first_response"] == sla(0, 0, 1, None)
    assert b["sla_resolution"] == sla(0, 0, 1, None)
    assert b["csat"] == csat(0, 0, None, None)
    assert b["nps"] == nps(0, 0, 0, None)
    assert b["deflection"] == deflection(0, 1, 0, 1, 0, 0.5)
    assert b["complaints"] == complaints(0, 0, 0)

    assert (c["conversations"], c["open"], c["abandoned"], c["abandoned_in_queue"]) == (2, 1, 1, 0)
    assert c["wait_seconds"] == NONE
    assert c["sla_first_response"] == sla(0, 2, 0, 0.0)
    assert c["sla_resolution"] == sla(0, 1, 1, 0.0)
    assert c["handle_seconds"] == durations(1, 5400.0, 5400.0, 5400.0, 5400.0)
    assert c["resolution_seconds"] == NONE
    assert c["csat"] == csat(1, 1, 1.0, 3.0)
    assert c["nps"] == nps(0, 0, 1, -100.0)
    assert c["deflection"] == deflection(2, 0, 1, 0, 1, 0.666667)
    assert c["complaints"] == complaints(1, 0, 0)


async def test_by_agent(figures: dict[str, Any]) -> None:
    agents = {g["name"]: g for g in figures["agents"]}
    assert list(agents) == ["Ann", "Bob"]
    ann, bob = agents["Ann"], agents["Bob"]
    # Ann: c1, c3, c8.
    assert (ann["conversations"], ann["answered"], ann["abandoned"]) == (3, 3, 0)
    assert ann["wait_seconds"] == durations(3, 50.0, 250.0, 300.0, 126.666667)
    assert ann["sla_first_response"] == sla(3, 0, 0, 1.0)
    assert ann["sla_resolution"] == sla(2, 1, 0, 0.666667)
    assert ann["handle_seconds"] == durations(3, 3420.0, 4996.0, 5390.0, 3730.0)
    assert ann["csat"] == csat(3, 2, 0.666667, 4.5)
    assert ann["nps"] == nps(1, 0, 0, 100.0)  # V1's account manager
    assert ann["complaints"] == complaints(1, 0, 0)
    assert ann["deflection"] is None
    # Bob: c2, c5 (abandoned while he held it), c6.
    assert (bob["conversations"], bob["answered"], bob["abandoned"], bob["open"]) == (3, 2, 1, 1)
    assert bob["wait_seconds"] == durations(2, 360.0, 552.0, 600.0, 360.0)
    assert bob["sla_first_response"] == sla(0, 3, 0, 0.0)
    assert bob["sla_resolution"] == sla(0, 2, 1, 0.0)
    assert bob["handle_seconds"] == durations(2, 6270.0, 6966.0, 7140.0, 6270.0)
    assert bob["csat"] == csat(2, 2, 1.0, 2.5)
    assert bob["nps"] == nps(0, 1, 0, 0.0)  # A1 names Bob by Telegram id
    assert bob["complaints"] == complaints(1, 1, 1)


async def test_waits_over_time(figures: dict[str, Any]) -> None:
    waits = figures["waits_over_time"]
    assert waits["bucket_seconds"] == 86400
    assert waits["starts"] == [f"2026-11-0{d}T00:00:00Z" for d in range(1, 8)]
    vip = waits["tiers"]["VIP"]
    assert vip[0] == durations(2, 75.0, 111.0, 120.0, 75.0)  # c1 30 s, c2 120 s
    assert vip[4] == durations(1, 50.0, 50.0, 50.0, 50.0)  # c8
    assert [d["count"] for d in vip] == [2, 0, 0, 0, 1, 0, 0]
    assert [d["p50"] for d in waits["tiers"]["A"]] == [None, 300.0, None, 600.0, None, None, None]
    assert all(d["count"] == 0 for t in ("B", "C") for d in waits["tiers"][t])


async def test_customers_and_revenue(figures: dict[str, Any]) -> None:
    assert figures["tier_distribution"] == {
        "tiers": [
            {"tier": "VIP", "customers": 2, "spend_12m": 1_500_000.0},
            {"tier": "A", "customers": 2, "spend_12m": 550_000.0},
            {"tier": "B", "customers": 2, "spend_12m": 160_000.0},
            {"tier": "C", "customers": 4, "spend_12m": 40_000.0},
        ],
        "guests": 1,
    }
    moves = figures["tier_movements"]
    assert moves["changes"] == [
        {"from": None, "to": "C", "changes": 1, "direction": "new"},
        {"from": "VIP", "to": "A", "changes": 1, "direction": "down"},
        {"from": "A", "to": "VIP", "changes": 1, "direction": "up"},
        {"from": "C", "to": "B", "changes": 1, "direction": "up"},
    ]
    assert (moves["upgrades"], moves["downgrades"]) == (2, 1)
    # 10 records, 2,250,000 in all; the top 20% (2 customers) hold 900k + 600k.
    k = figures["revenue_concentration"]
    assert (k["customers"], k["total_spend_12m"], k["top_customers"], k["top_spend_12m"]) == (
        10, 2_250_000.0, 2, 1_500_000.0,
    )  # fmt: skip
    assert k["top_share"] == 0.666667
    cumulative = [0, 900, 1500, 1800, 2050, 2150, 2210, 2235, 2245, 2250, 2250]
    assert k["curve"] == [[i / 10, round(c / 2250, 6)] for i, c in enumerate(cumulative)]
    # Detractors: V2 (NPS 6, CSAT 2), -C1 (NPS 3). VIP chats that breached: V2 (c2), V1 (c8).
    assert figures["revenue_at_risk"] == {
        "detractors": 2, "detractor_spend_12m": 610_000.0,
        "breached_customers": 2, "breach_spend_12m": 1_500_000.0,
        "customers": 3, "spend_12m": 1_510_000.0,
    }  # fmt: skip


async def test_one_row_per_conversation(figures: dict[str, Any]) -> None:
    rows = figures["conversations"]
    got = [
        (r["customer"], r["tier"], r["agent"], r["wait_seconds"], r["first_response_sla"],
         r["resolution_sla"], r["abandoned"], r["csat"])
        for r in rows
    ]  # fmt: skip
    assert got == [
        ("V1", "VIP", "Ann", 30.0, "met", "met", False, 5),
        ("V2", "VIP", "Bob", 120.0, "missed", "missed", False, 2),
        ("A1", "A", "Ann", 300.0, "met", "met", False, None),
        ("@B1", "B", None, None, None, None, True, None),
        ("-C1", "C", "Bob", None, "missed", None, True, 3),
        ("\tA2", "A", "Bob", 600.0, "missed", "missed", False, None),
        ("V1", "VIP", "Ann", 50.0, "met", "missed", False, 4),
        ("=2+5", "C", None, None, "missed", "missed", False, None),
    ]
    first = rows[0]
    assert (first["queued_at"], first["first_response_at"], first["closed_at"]) == (
        "2026-11-01T10:00:00Z", "2026-11-01T10:00:30Z", "2026-11-01T10:40:00Z",
    )  # fmt: skip
    assert (first["status"], first["origin"]) == ("closed", "human_first")
    assert rows[7]["status"] == "queued" and rows[7]["closed_at"] is None


async def test_an_empty_period(db: Db) -> None:
    async with db.sessions() as s, s.begin():
        report = await build(s, Policy(), Period(SINCE, UNTIL, NOW))
    figures = to_dict(report)
    o = figures["overall"]
    assert o["conversations"] == 0 and o["wait_seconds"] == NONE
    assert o["sla_first_response"]["share"] is None and o["abandonment_rate"] is None
    assert figures["revenue_concentration"]["top_share"] is None
    assert figures["revenue_concentration"]["curve"] == [[0.0, 0.0]]
    assert figures["agents"] == [] and figures["conversations"] == []
