"""``contactbot report``: the four formats on the known history of report_history.py, the
CSV's spreadsheet safety, the HTML's independence from the network, bad options."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from pathlib import Path

import pytest

from bot.cli import main
from routing.store.db import make_engine, make_sessionmaker, upgrade
from tests.integration.report_history import NOW, seed

WEEK = ["--since", "2026-11-01", "--until", "2026-11-08"]


async def _seed(url: str) -> None:
    engine = make_engine(url)
    await upgrade(engine)
    async with make_sessionmaker(engine)() as s, s.begin():
        await seed(s)
    await engine.dispose()


@pytest.fixture
def history(cli_db_url: str, cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    asyncio.run(_seed(cli_db_url))
    clock = cli_env / "clock.txt"
    clock.write_text(NOW.isoformat(), encoding="utf-8")
    monkeypatch.setenv("CONTACTBOT_CLOCK_FILE", str(clock))
    return cli_env


def _row(out: str, first: str) -> list[str]:
    """The cells of the first table row whose first cell is ``first``."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{out}")


def test_table(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", *WEEK]) == 0
    out = capsys.readouterr().out
    assert "Conversations 2026-11-01 00:00 to 2026-11-08 00:00 UTC" in out
    # conversations, answered, open, abandoned, wait p50/p90/max, SLA met, handle, resolution
    assert _row(out, "all") == [
        "all", "8", "5", "2", "2 (25.0%)", "2m 00s", "8m 00s", "10m 00s", "42.9% (3/7)",
        "33.3% (2/6)", "1h 19m", "1h 17m",
    ]  # fmt: skip
    assert _row(out, "VIP")[:9] == [
        "VIP", "3", "3", "0", "0 (0.0%)", "50s", "1m 46s", "2m 00s", "66.7% (2/3)",
    ]  # fmt: skip
    # Agents: Ann's first-response share; Bob's CSAT and NPS (P/P/D) in the second table.
    assert _row(out, "Ann")[8] == "100.0% (3/3)"
    bob = [r for r in out.splitlines() if r.strip().strip("│").strip().startswith("Bob")]
    assert any("2.50 (2)" in r and "+0.0 (0/1/0)" in r for r in bob)
    assert "share held by the top 20%" in out and "66.7%" in out
    assert "1,510,000" in out  # revenue at risk, either list


def test_json_to_stdout_and_file(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", *WEEK, "--format", "json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["overall"]["conversations"] == 8
    assert figures["overall"]["wait_seconds"]["p90"] == 480.0
    assert [g["name"] for g in figures["tiers"]] == ["VIP", "A", "B", "C"]
    assert len(figures["conversations"]) == 8

    target = history / "report.json"
    assert main(["report", *WEEK, "--format", "json", "--out", str(target)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"written to {target}" in captured.err
    assert json.loads(target.read_text(encoding="utf-8")) == figures


def test_default_period_is_the_last_30_days(
    history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--format", "json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["period"] == {"since": "2026-10-11T12:00:00Z", "until": "2026-11-10T12:00:00Z",
                                 "generated_at": "2026-11-10T12:00:00Z"}  # fmt: skip
    assert figures["overall"]["conversations"] == 10  # c9 and c10 too
    assert main(["report", "--since", "2d", "--until", "2026-11-02", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["conversations"] == 3  # c9, c1, c2


def test_csv_summary_and_conversations_safe_for_spreadsheets(history: Path) -> None:
    target = history / "report.csv"
    assert main(["report", *WEEK, "--format", "csv", "--out", str(target)]) == 0
    text = target.read_bytes().decode("utf-8")  # the CSV's CRLF row ends as written
    summary_text, conversations_text = text.split("\r\n\r\n")
    summary = list(csv.reader(io.StringIO(summary_text)))
    assert summary[0] == ["section", "group", "metric", "value"]
    values = {(s, g, m): v for s, g, m, v in summary[1:]}
    assert values["overall", "all", "conversations"] == "8"
    assert values["overall", "all", "wait_seconds.p90"] == "480.0"
    assert values["overall", "all", "sla_first_response.share"] == "0.428571"
    assert values["tier", "VIP", "csat.average"] == "3.666667"
    assert values["tier", "C", "nps.score"] == "-100.0"  # a number stays a number
    assert values["tier", "B", "wait_seconds.p50"] == ""  # nothing to measure
    assert values["agent", "Bob", "complaints.breached"] == "1"
    assert values["tier_movement", "A -> VIP", "up"] == "1"
    assert values["revenue_concentration", "all", "top_share"] == "0.666667"
    assert values["pareto", "2", "spend_share"] == "0.666667"
    assert values["revenue_at_risk", "all", "spend_12m"] == "1510000.0"
    assert values["waits_over_time", "VIP 2026-11-01T00:00:00Z", "wait_seconds.p50"] == "75.0"

    rows = list(csv.reader(io.StringIO(conversations_text)))
    assert rows[0][:5] == ["conversation", "customer", "tier", "origin", "agent"]
    assert len(rows) == 1 + 8
    by_customer = {r[1]: r for r in rows[1:]}
    # The customer ids that start like formulas (=, -, @, tab) are quoted as text.
    assert set(by_customer) == {"V1", "V2", "A1", "'@B1", "'-C1", "'\tA2", "'=2+5"}
    c1 = rows[1]
    assert c1[2:] == [
        "VIP", "human_first", "Ann", "closed", "2026-11-01T10:00:00Z", "2026-11-01T10:00:30Z",
        "2026-11-01T10:40:00Z", "30.0", "met", "met", "no", "5",
    ]  # fmt: skip
    # No cell anywhere starts like a formula unless it is a plain number.
    for row in summary + rows:
        for cell in row:
            if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
                assert re.fullmatch(r"-\d+(\.\d+)?", cell), cell


def test_html_is_one_offline_file(history: Path) -> None:
    target = history / "report.html"
    assert main(["report", *WEEK, "--format", "html", "--out", str(target)]) == 0
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for title in (
        "Wait to first agent message, p50, by tier",
        "Wait to first agent message, p90, by tier",
        "SLA met by tier",
        "CSAT by tier",
        "NPS by tier",
        "CSAT by agent",
        "NPS by agent",
        "Customers by tier now",
        "Revenue concentration: share of 12-month spend (Pareto)",
    ):
        assert title in page
    assert page.count("<svg") == 9
    # Nothing outside the file: no URL at all, no script, stylesheet, image or font to fetch.
    assert not re.search(r"https?:|//[a-z0-9]", page, re.IGNORECASE)
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(", page, re.IGNORECASE)
    assert "42.9% (3/7)" in page and ">Ann<" in page


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--since", "30x"], "contactbot: bad duration '30x': use a number and m, h, d or w"),
        (["--since", "0d"], "contactbot: bad duration '0d': between 1 minute and 3660 days"),
        (["--until", "2026-13-01"], "contactbot: bad date '2026-13-01': use YYYY-MM-DD"),
        (["--since", "2026-11-08", "--until", "2026-11-01"], "contactbot: --since '2026-11-08' "
         "is not before --until 2026-11-01 00:00 UTC"),
    ],
)  # fmt: skip
def test_bad_period_is_one_line_and_exit_2(
    history: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    assert main(["report", *options]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1


def test_out_in_a_missing_directory(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = history / "nowhere" / "report.html"
    assert main(["report", "--format", "html", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("contactbot: --out ") and "no such directory" in err
    assert err.count("\n") == 1
