"""`contactbot customers invite`: a t.me deep link (and a QR code) for one customer, a CSV
of links for a whole tier, and the bot's username from getMe when not given."""

from __future__ import annotations

import asyncio
import csv
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.cli import main
from routing.customers import invitations
from routing.customers.identity import LinkStatus
from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import Customer
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
LINK = re.compile(r"https://t\.me/(\w+)\?start=([A-Za-z0-9_-]{1,64})")


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for key in list(os.environ):
        if key.startswith("CONTACTBOT_"):
            monkeypatch.delenv(key)
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CONTACTBOT_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)

    async def seed() -> None:
        engine = make_engine(url)
        await upgrade(engine)
        async with make_sessionmaker(engine)() as s, s.begin():
            for ext, name, tier in (
                ("V-1", "Victoria", "VIP"),
                ("V-2", '=HYPERLINK("http://evil")', "VIP"),
                ("V-3", "@admin", "VIP"),
                ("C-1", "Cat", "C"),
            ):
                s.add(Customer(external_id=ext, name=name, tier=tier, created_at=NOW,
                               updated_at=NOW))  # fmt: skip
        await engine.dispose()

    asyncio.run(seed())
    return url


def _redeem(url: str, token: str, user: int) -> LinkStatus:
    async def work() -> LinkStatus:
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as s, s.begin():
                result = await invitations.redeem(s, token, user, now=datetime.now(UTC))
                return result.status
        finally:
            await engine.dispose()

    return asyncio.run(work())


def test_invite_prints_a_link_that_works_once_and_writes_a_qr(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "v1.png"
    args = ["customers", "invite", "V-1", "--expires", "2d", "--qr", str(png)]
    assert main([*args, "--bot-username", "@acme_care_bot"]) == 0
    captured = capsys.readouterr()
    m = LINK.search(captured.out)
    assert m is not None and m.group(1) == "acme_care_bot", captured.out
    assert "valid until" in captured.err
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 200
    token = m.group(2)
    assert _redeem(cli_db, token, 42) is LinkStatus.LINKED
    assert _redeem(cli_db, token, 43) is LinkStatus.NOT_FOUND


def test_invite_a_tier_writes_a_spreadsheet_safe_csv(
    cli_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTACTBOT_BOT_USERNAME", "acme_care_bot")
    out = tmp_path / "invites.csv"
    assert main(["customers", "invite", "--tier", "VIP", "--out", str(out)]) == 0
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["external_id"] for r in rows] == ["V-1", "V-2", "V-3"]
    assert list(rows[0]) == ["external_id", "name", "link", "expires_at"]
    by_id = {r["external_id"]: r for r in rows}
    assert by_id["V-2"]["name"] == '\'=HYPERLINK("http://evil")'
    assert by_id["V-3"]["name"] == "'@admin"
    tokens = set()
    for r in rows:
        m = LINK.fullmatch(r["link"])
        assert m is not None and m.group(1) == "acme_care_bot"
        tokens.add(m.group(2))
        assert datetime.fromisoformat(r["expires_at"]) > datetime.now(UTC)
    assert len(tokens) == 3


def test_invite_refusals(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["customers", "invite", "--bot-username", "acme_care_bot"]
    assert main([*base, "NOPE"]) == 1
    assert main([*base, "V-1", "--expires", "forever"]) == 2
    assert main([*base, "--tier", "VIP"]) == 2  # no --out
    assert main([*base, "--tier", "Z", "--out", "x.csv"]) == 2
    assert main(["customers", "invite", "V-1", "--bot-username", "not a name"]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.fixture
def fake_api() -> Iterator[FakeBotAPI]:
    """The fake Bot API on its own event loop, for a command line that runs asyncio.run."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    api = FakeBotAPI()
    asyncio.run_coroutine_threadsafe(api.start(), loop).result(10)
    try:
        yield api
    finally:
        asyncio.run_coroutine_threadsafe(api.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_invite_asks_telegram_for_the_username(
    cli_db: str,
    fake_api: FakeBotAPI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CONTACTBOT_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("CONTACTBOT_TELEGRAM_API_URL", fake_api.url)
    assert main(["customers", "invite", "C-1"]) == 0
    m = LINK.search(capsys.readouterr().out)
    assert m is not None and m.group(1) == "contactbot_test_bot"
    assert [c.method for c in fake_api.calls] == ["getMe"]
