"""Benchmark 1b: CPU per update, in one process, with no network.

    python -m bench cpu [--size tiny|default] [--json FILE]

The pipeline benchmark's updates/s depends on how busy the shared machine is. This one
feeds the same message mix (``Traffic.mixed``) straight into the real dispatcher
(``Dispatcher.feed_update``, every middleware and handler, SQLite on disk) with a Bot
session that answers every API call locally, and measures the process CPU time per
update, the part of an update's cost that is ours. The floor is aiogram alone: a
dispatcher whose only handler echoes the message through the same local session. Runs
alternate the two and the figures are medians.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Message, Update
from pydantic import TypeAdapter

from bench.common import ROOT, Figure, Traffic, median, seed

TOKEN = "42:BENCH"


@dataclass(frozen=True)
class Size:
    messages: int
    customers: int
    reps: int


SIZES = {
    "tiny": Size(messages=60, customers=400, reps=1),
    "default": Size(messages=1500, customers=10_000, reps=3),
}


class LocalSession(BaseSession):
    """Answers every Bot API call in-process, as Telegram would for a successful call."""

    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(10**9)
        self._adapters: dict[Any, TypeAdapter[Any]] = {}

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 - the interface aiogram defines
    ) -> TelegramType:
        returning: Any = method.__returning__
        if returning is bool:
            return True  # type: ignore[return-value]
        chat_id = getattr(method, "chat_id", 1)
        raw: dict[str, Any] = {"message_id": next(self._ids)}
        if returning is not type(None) and "MessageId" not in getattr(returning, "__name__", ""):
            raw |= {"date": 0, "chat": {"id": chat_id, "type": "private"}, "text": "ok"}
        adapter = self._adapters.get(returning)
        if adapter is None:
            adapter = self._adapters[returning] = TypeAdapter(returning)
        result: TelegramType = adapter.validate_python(raw, context={"bot": bot})
        return result

    async def close(self) -> None:
        pass

    async def stream_content(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


def _updates(traffic: list[tuple[int, str, str]], bot: Bot) -> list[Update]:
    return [
        Update.model_validate(
            {
                "update_id": i + 1,
                "message": {
                    "message_id": i + 1,
                    "date": 0,
                    "chat": {"id": user, "type": "private"},
                    "from": {"id": user, "is_bot": False, "first_name": "U"},
                    "text": text,
                },
            },
            context={"bot": bot},
        )
        for i, (user, text, _kind) in enumerate(traffic)
    ]


async def _feed(dp: Dispatcher, bot: Bot, updates: list[Update]) -> float:
    """CPU seconds per update; updates go in concurrently, 64 at a time, as when polling."""
    gate = asyncio.Semaphore(64)

    async def one(update: Update) -> None:
        async with gate:
            await dp.feed_update(bot, update)

    c0 = time.process_time()
    await asyncio.gather(*(one(u) for u in updates))
    return (time.process_time() - c0) / len(updates)


async def _take_in(intake: Any, updates: list[Update]) -> float:
    """CPU seconds per update the way the bot takes them: stored in the inbox in batches of
    100 (a getUpdates answer), handled per chat, marked done (the delivery guarantees)."""
    raws = [u.model_dump(mode="json", exclude_none=True) for u in updates]
    c0 = time.process_time()
    for i in range(0, len(raws), 100):
        await intake.accept(raws[i : i + 100])
    await intake.wait_idle()
    return (time.process_time() - c0) / len(updates)


async def _ours(workdir: Path, size: Size, tag: str) -> float:
    from bot.app import make_dispatcher
    from bot.intake import Intake
    from routing.clock import utcnow
    from routing.policy.root import Policy
    from routing.store.db import make_engine, make_sessionmaker

    world = await seed(workdir / f"cpu-{tag}.db", size.customers)
    traffic = Traffic(world).mixed(size.messages)
    engine = make_engine(world.db_url)
    bot = Bot(TOKEN, session=LocalSession())
    try:
        sessions = make_sessionmaker(engine)
        dp = make_dispatcher(sessions, Policy(), bot)
        per_update = await _take_in(Intake(dp, bot, sessions, utcnow), _updates(traffic, bot))
    finally:
        await engine.dispose()
    return per_update


async def _bare(workdir: Path, size: Size, tag: str) -> float:
    world = await seed(workdir / f"cpu-bare-{tag}.db", size.customers)
    traffic = Traffic(world).mixed(size.messages)
    bot = Bot(TOKEN, session=LocalSession())
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "?")

    return await _feed(dp, bot, _updates(traffic, bot))


async def _in_fresh_process(which: str, workdir: Path, size_name: str, tag: str) -> float:
    # bot.handlers' routers are module singletons that join one dispatcher per process, and
    # a fresh process gives both bots the same start (imports, caches) anyway.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.cpu", which, str(workdir), size_name, tag,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.cpu {which} failed with exit code {proc.returncode}")
    return float(out.decode().strip().splitlines()[-1])


async def run(size_name: str = "default", workdir: Path | None = None) -> list[Figure]:
    size = SIZES[size_name]
    ours: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="contactbot-bench-") as tmp:
        wd = workdir or Path(tmp)
        for rep in range(size.reps):
            bare.append(await _in_fresh_process("bare", wd, size_name, str(rep)))
            ours.append(await _in_fresh_process("ours", wd, size_name, str(rep)))
            print(
                f"  rep {rep}: contactbot {ours[-1] * 1000:6.2f} ms CPU/update,"
                f" bare aiogram {bare[-1] * 1000:6.2f} ms CPU/update"
            )
    ratio = median([b / o for o, b in zip(ours, bare, strict=True)])
    return [
        Figure("cpu_contactbot_ms_per_update", median(ours) * 1000, "ms"),
        Figure("cpu_bare_aiogram_ms_per_update", median(bare) * 1000, "ms"),
        Figure("cpu_ratio", ratio, "bare/ours", goal=">= 0.5", met=ratio >= 0.5),
    ]


if __name__ == "__main__":
    # One measurement in this process: python -m bench.cpu ours|bare WORKDIR SIZE TAG
    which, workdir, size_name, tag = sys.argv[1:5]
    fn = _ours if which == "ours" else _bare
    print(asyncio.run(fn(Path(workdir), SIZES[size_name], tag)))
