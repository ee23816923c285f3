"""End-to-end harness: the real bot process (``python -m bot run``) against the fake Bot API."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.clock import set_file_clock
from routing.queue.agents import add_agent
from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import Agent, Customer
from tests.fakes.bot_api import DEFAULT_TOKEN, Call, FakeBotAPI
from tests.template_databases import migrated_sqlite

ROOT = Path(__file__).resolve().parents[2]
NO_CAMPAIGNS = "\n[surveys.nps]\ncampaigns = []\n"


@dataclass
class BotProcess:
    """One run of the bot as a separate OS process, as users run it."""

    env: dict[str, str]
    log_path: Path
    api: FakeBotAPI
    proc: asyncio.subprocess.Process | None = None
    _log: Any = field(default=None, repr=False)

    async def start(self, timeout: float = 90.0) -> None:  # noqa: ASYNC109
        mark = self.api.mark()
        self._log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=self.env, cwd=ROOT,
            stdout=self._log, stderr=self._log,
        )  # fmt: skip
        # deleteWebhook is the last call before polling; updates queued from then on are
        # answered by the first getUpdates (the fake records a call when it completes, so
        # waiting for getUpdates itself would wait out a whole long poll).
        try:
            await self.api.wait_for("deleteWebhook", since=mark, timeout=timeout)
        except AssertionError:
            raise AssertionError(f"bot did not start polling:\n{self.log()}") from None

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            with suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._log is not None:
            self._log.close()
        rc = self.proc.returncode
        self.proc = None
        assert rc is not None
        return rc

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        await self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Env:
    api: FakeBotAPI
    db_url: str
    bot: BotProcess
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    async def seed(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run ``work(session)`` in one transaction against the bot's database."""
        engine = make_engine(self.db_url)
        try:
            await upgrade(engine)
            async with make_sessionmaker(engine)() as s, s.begin():
                return await work(s)
        finally:
            await engine.dispose()

    async def add_customer(self, **kw: Any) -> int:
        async def work(s: Any) -> int:
            c = Customer(created_at=self.now, updated_at=self.now, **kw)
            s.add(c)
            await s.flush()
            return int(c.id)

        return int(await self.seed(work))

    async def add_agent(self, telegram_id: int, name: str, *, online: bool = False) -> None:
        async def work(s: Any) -> None:
            agent, _ = await add_agent(s, telegram_id, name, max_chats=5, now=self.now)
            agent.online = online

        await self.seed(work)

    async def query(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        return await self.seed(work)

    def use_clock(self, now: datetime) -> None:
        """Run the bot on a controllable clock starting at ``now`` (call before start)."""
        path = self.bot.log_path.with_name("clock.txt")
        set_file_clock(path, now)
        self.bot.env["CONTACTBOT_CLOCK_FILE"] = str(path)
        self.now = now

    def set_clock(self, now: datetime) -> None:
        """Move the running bot's clock (after :meth:`use_clock`)."""
        set_file_clock(Path(self.bot.env["CONTACTBOT_CLOCK_FILE"]), now)
        self.now = now

    def policy_file(self, toml: str) -> Path:
        """Run the bot with this policy file (call before start).

        NPS campaigns are off unless the file configures them: with the built-in crons a
        run on the 1st of a month would survey the seeded customers mid-test.
        """
        path = self.bot.log_path.with_name("contactbot.toml")
        if "surveys.nps" not in toml:
            toml += NO_CAMPAIGNS
        path.write_text(toml, encoding="utf-8")
        self.bot.env["CONTACTBOT_CONFIG"] = str(path)
        return path

    # --- conversation helpers -------------------------------------------------------
    async def say(self, user_id: int, text: str | None = None, **kw: Any) -> Call:
        """A user sends a message; returns the first bot call into their chat after it."""
        mark = self.api.mark()
        self.api.user_message(user_id, text, **kw)
        return await self.api.wait_for(chat_id=user_id, since=mark, predicate=_content)

    async def press(self, user_id: int, call: Call, label: str | None = None) -> int:
        """Press a button (the first, or the one whose label contains ``label``)."""
        mark = self.api.mark()
        self.api.press(user_id, message_id(call), button_data(call, label))
        return mark


def _content(call: Call) -> bool:
    return call.ok and call.method in {"sendMessage", "copyMessage", "sendPhoto"}


def message_id(call: Call) -> int:
    result = call.result
    return int(result["message_id"])


def buttons(call: Call) -> list[tuple[str, str]]:
    markup = call.params.get("reply_markup") or {}
    return [
        (b["text"], b.get("callback_data", ""))
        for row in markup.get("inline_keyboard", [])
        for b in row
    ]


def button_data(call: Call, label: str | None = None) -> str:
    for text, data in buttons(call):
        if label is None or label in text:
            return data
    raise AssertionError(f"no button {label!r} in {buttons(call)}")


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def env(api: FakeBotAPI, tmp_path: Path) -> AsyncIterator[Env]:
    # The schema exists before seeding, as after `contactbot db upgrade` (a copy of a
    # migrated template: tests/template_databases.py).
    db_url = await migrated_sqlite(tmp_path / "bot.db")
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTBOT_")} | {
        "CONTACTBOT_TOKEN": DEFAULT_TOKEN,
        "CONTACTBOT_DATABASE_URL": db_url,
        "CONTACTBOT_TELEGRAM_API_URL": api.url,
        "PYTHONUNBUFFERED": "1",
    }
    bot = BotProcess(proc_env, tmp_path / "bot.log", api)
    e = Env(api, db_url, bot)
    e.policy_file("")
    yield e
    if bot.proc is not None:
        await bot.stop()


async def agent_row(env: Env, telegram_id: int) -> Agent:
    from sqlalchemy import select

    async def work(s: Any) -> Agent:
        return (await s.execute(select(Agent).where(Agent.telegram_id == telegram_id))).scalar_one()

    result: Agent = await env.query(work)
    return result
