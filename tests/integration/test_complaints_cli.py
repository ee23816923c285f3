"""``contactbot complaints list [--status open|resolved|breached] [--tier T] [--since 30d]``
and ``contactbot complaints show ID``: the cases, one case's timeline, remedy and follow-up
answer; stored data printed as data; one-line errors and their exit statuses."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.clock import set_file_clock
from routing.complaints import cases, follow_up, remedies
from routing.policy.root import Policy
from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import Agent, Customer

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
POLICY = Policy()


async def _seed(url: str) -> None:
    engine = make_engine(url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)

    async def customer(ext: str, tier: str, name: str) -> Customer:
        async with sessions() as s, s.begin():
            c = Customer(
                external_id=ext, name=name, telegram_id=int(ext[1:]) + 100, tier=tier,
                tier_override=tier, created_at=NOW - timedelta(days=400), updated_at=NOW,
            )  # fmt: skip
            s.add(c)
        return c

    async def open_case(c: Customer, category: str, text: str, at: datetime) -> int:
        async with sessions() as s, s.begin():
            opened = await cases.open_by_customer(s, c, category, text, at, POLICY)
            return opened.complaint.id

    async with sessions() as s, s.begin():
        ann = Agent(telegram_id=900, name="Ann", created_at=NOW)
        s.add(ann)
    zoe = await customer("K1", "B", "[bold]Zoe[/bold]")
    vic = await customer("K2", "VIP", "Victor")
    amy = await customer("K3", "A", "Amy")

    # 1: old, answered in time, resolved.
    one = await open_case(zoe, "delivery", "late", NOW - timedelta(days=40))
    async with sessions() as s, s.begin():
        await cases.acknowledge(s, one, ann.id, NOW - timedelta(days=40, hours=-1), POLICY)
        await remedies.resolve(s, one, NOW - timedelta(days=39), POLICY, agent_id=ann.id)
    # 2: acknowledged, a remedy, resolved, "no" (reopened), rated 2.
    t = NOW - timedelta(days=2)
    two = await open_case(zoe, "billing", "charged [red]twice[/red]", t)
    async with sessions() as s, s.begin():
        await cases.acknowledge(s, two, ann.id, t + timedelta(minutes=5), POLICY)
        remedy = remedies.parse_remedy("refund 25,50 second charge", POLICY)
        await remedies.record_remedy(
            s, two, remedy, t + timedelta(hours=1), POLICY, agent_id=ann.id
        )
        await remedies.resolve(s, two, t + timedelta(hours=2), POLICY, agent_id=ann.id)
        await follow_up.record_follow_up(s, two, False, t + timedelta(hours=3), POLICY)
        await follow_up.record_follow_up_score(s, two, 2, t + timedelta(hours=3, minutes=1))
    # 3: a VIP case nobody acknowledged for a day: breached.
    await open_case(vic, "product", "broken", NOW - timedelta(days=1))
    # 4: an A case of half an hour ago (acknowledge within an hour).
    await open_case(amy, "service", "rude courier", NOW - timedelta(minutes=30))
    await engine.dispose()


@pytest.fixture
def seeded(cli_db_url: str, cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    clock = cli_env / "clock.txt"
    set_file_clock(clock, NOW)
    monkeypatch.setenv("CONTACTBOT_CLOCK_FILE", str(clock))
    asyncio.run(_seed(cli_db_url))
    return cli_db_url


def _cases(out: str) -> list[str]:
    """The case numbers of a list, in order."""
    return re.findall(r"^│\s*(#\d+)\s*│", out, re.M)


def _row(out: str, case: str) -> list[str]:
    line = next(x for x in out.splitlines() if re.match(rf"^│\s*{case}\s*│", x))
    return [c.strip() for c in line.split("│")[1:-1]]


def test_list_newest_first_with_each_filter(
    seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["complaints", "list"]) == 0
    out = capsys.readouterr().out
    assert _cases(out) == ["#4", "#3", "#2", "#1"]
    assert _row(out, "#2") == [
        "#2", "2026-12-08 12:00", "K1 [bold]Zoe[/bold]", "B", "billing",
        "reopened (1x reopened)", "yes", "refund 25.50", "unsatisfied, rated 2/5", "2.25",
    ]  # fmt: skip
    assert _row(out, "#3")[5:7] == ["open", "yes"]

    for args, expected in (
        (["--status", "open"], ["#4", "#3", "#2"]),
        (["--status", "resolved"], ["#1"]),
        (["--status", "breached"], ["#3", "#2"]),  # #2 reopened, unanswered for 45 h
        (["--tier", "VIP"], ["#3"]),
        (["--since", "30d"], ["#4", "#3", "#2"]),
        (["--since", "2026-12-09"], ["#4", "#3"]),
        (["--status", "open", "--tier", "A", "--since", "12h"], ["#4"]),
    ):
        assert main(["complaints", "list", *args]) == 0
        assert _cases(capsys.readouterr().out) == expected, args
    assert main(["complaints", "list", "--tier", "C"]) == 0
    assert "Complaints (0, tier C): none" in capsys.readouterr().out


def test_show_a_case_with_its_timeline_remedy_and_answer(
    seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["complaints", "show", "#2"]) == 0
    out = capsys.readouterr().out
    facts = {
        cells[1].strip(): cells[2].strip()
        for cells in (line.split("│") for line in out.splitlines() if line.count("│") == 3)
    }
    assert facts["status"] == "reopened, reopened 1x"
    assert facts["customer"] == "K1 [bold]Zoe[/bold]"  # data, not markup
    assert facts["description"] == "charged [red]twice[/red]"
    assert facts["remedy"] == "refund 25.50" and facts["remedy note"] == "second charge"
    assert facts["follow-up answer"] == "unsatisfied, rated 2/5"
    assert facts["agent"] == "" and facts["breached"] == "yes"  # reopened, not answered
    events = [
        [c.strip() for c in line.split("│")[1:-1]]
        for line in out.splitlines()
        if line.count("│") == 7 and re.match(r"^│\s*2026-", line)
    ]
    assert [e[1] for e in events] == [
        "opened", "acknowledged", "remedy", "resolved", "follow_up", "reopened", "follow_up",
    ]  # fmt: skip
    assert events[1][4] == "Ann" and events[2][5] == "refund 25.50: second charge"
    assert events[4][5] == "unsatisfied" and events[6][5] == "rating 2"
    assert [e[3] for e in events] == ["0", "0", "0", "0", "0", "1", "1"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "99"], 1, "contactbot: no complaint #99"),
        (["show", "abc"], 2, "contactbot: abc is not a case number (e.g. 12)"),
        (["list", "--since", "soon"], 2, "contactbot: --since: bad duration 'soon'"),
        (["list", "--tier", "Gold"], 2, "contactbot: no tier 'Gold' (tiers: VIP, A, B, C)"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_status(
    seeded: str, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    assert main(["complaints", *args]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message) and captured.err.count("\n") == 1


def test_bad_status_is_refused_by_the_parser(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["complaints", "list", "--status", "closed"])
    assert exit_.value.code == 2
    assert "invalid choice: 'closed'" in capsys.readouterr().err
