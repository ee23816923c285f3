"""Benchmark 1b: CPU per update, in one process, with no network: the mix and each path.

    python -m bench cpu [--size tiny|default] [--path NAME] [--json FILE]

The pipeline benchmark's updates/s depends on how busy the shared machine is. This one
feeds updates straight into the real dispatcher the way the bot takes them (the inbox,
``Intake.accept``: stored in batches of 100, handled per chat, marked done; every middleware
and handler, SQLite on disk) with a Bot session that answers every API call locally, and
measures the process CPU time per update, the part of an update's cost that is ours. The
floor is aiogram alone: a dispatcher whose only handler echoes the message through the same
local session. Every measurement runs in a fresh process; repetitions alternate them and the
figures are medians.

Fed first is the standard mix (``Traffic.mixed``: 60% self-service, 10% VIPs opening a chat,
15% relays each way); then each handler path on its own, as one batch of updates of that
kind on a database set up for it (``PATHS``):

    self_text          a customer's free text, answered by self-service search
    menu_press         a press on a self-service menu button (callback query, "Orders")
    relay_to_agent     a customer in an assigned chat writes; relayed to their agent
    relay_to_customer  the agent answers; relayed to the customer
    vip_open           a VIP's first message: opens a chat, pages the online agents
    claim_button       an agent presses Claim under a queued chat's notification
    claim_next         an agent sends /next with chats queued
    close              an agent sends /close in their one open chat

``--path NAME`` runs one of them (or ``mix``) against the floor. Each path checks its
effect (chats opened, claimed, closed; nothing quarantined), so a figure is never the cost
of a refusal. To profile one path, run its measuring process under py-spy::

    python -m bench.cpu path vip_open /tmp/cpu-prof default 0            # prints s/update
    py-spy record -r 250 -o vip.svg -- python -m bench.cpu path vip_open /tmp/cpu-prof default 0

(``python -m bench.cpu ours|bare WORKDIR SIZE TAG`` is the mix and the floor the same way.)
"""

from __future__ import annotations

import asyncio
import itertools
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Message, Update
from pydantic import TypeAdapter
from sqlalchemy import func, insert, select, update

from bench.common import CUSTOMER_TG, NOW, ROOT, Figure, Traffic, World, loadavg, median, seed

TOKEN = "42:BENCH"
BOT_ID = 42
GOAL_MS = 1.5  # issue 19: the standard mix's CPU per update
PATHS = (
    "self_text",
    "menu_press",
    "relay_to_agent",
    "relay_to_customer",
    "vip_open",
    "claim_button",
    "claim_next",
    "close",
)
MENU_NODE = "orders"  # a submenu of the default policy's main menu


@dataclass(frozen=True)
class Size:
    messages: int
    customers: int
    reps: int
    per_path: int  # updates in each path's batch


SIZES = {
    "tiny": Size(messages=60, customers=400, reps=1, per_path=16),
    "default": Size(messages=1500, customers=10_000, reps=3, per_path=300),
}


class LocalSession(BaseSession):
    """Answers every Bot API call in-process, as Telegram would for a successful call."""

    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(10**9)
        self._adapters: dict[Any, TypeAdapter[Any]] = {}
        self.calls: Counter[str] = Counter()

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 - the interface aiogram defines
    ) -> TelegramType:
        self.calls[method.__api_method__] += 1
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


# ------------------------------------------------------------------ updates, as Telegram sends them


def _user(user: int) -> dict[str, Any]:
    return {"id": user, "is_bot": False, "first_name": "U"}


def message_update(update_id: int, user: int, text: str) -> dict[str, Any]:
    """A private text message (a command carries its ``bot_command`` entity)."""
    msg: dict[str, Any] = {
        "message_id": update_id,
        "date": 0,
        "chat": {"id": user, "type": "private"},
        "from": _user(user),
        "text": text,
    }
    if text.startswith("/"):
        msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {"update_id": update_id, "message": msg}


def callback_update(update_id: int, user: int, data: str, label: str) -> dict[str, Any]:
    """A press on a one-button inline keyboard under one of the bot's messages."""
    return {
        "update_id": update_id,
        "callback_query": {
            "id": str(update_id),
            "from": _user(user),
            "chat_instance": f"ci{user}",
            "data": data,
            "message": {
                "message_id": 500_000 + update_id,
                "date": 0,
                "chat": {"id": user, "type": "private"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Bot"},
                "text": label,
                "reply_markup": {"inline_keyboard": [[{"text": label, "callback_data": data}]]},
            },
        },
    }


def _updates(traffic: list[tuple[int, str, str]], bot: Bot) -> list[Update]:
    return [
        Update.model_validate(message_update(i + 1, user, text), context={"bot": bot})
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


async def _take_in_raw(intake: Any, raws: list[dict[str, Any]]) -> float:
    """CPU seconds per update the way the bot takes them: stored in the inbox in batches of
    100 (a getUpdates answer), handled per chat, marked done (the delivery guarantees)."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = time.process_time()
    for i in range(0, len(raws), 100):
        await intake.accept(raws[i : i + 100])
    await intake.wait_idle()
    spent = time.process_time() - c0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    n = len(raws)
    # Where the CPU went (user, kernel) and the thread hand-offs (voluntary switches).
    user = (r1.ru_utime - r0.ru_utime) / n * 1000
    kernel = (r1.ru_stime - r0.ru_stime) / n * 1000
    switches = (r1.ru_nvcsw - r0.ru_nvcsw) / n
    print(f"  user {user:.2f} ms, system {kernel:.2f} ms, {switches:.1f} voluntary context "
          "switches per update", file=sys.stderr)  # fmt: skip
    return spent / n


async def _take_in(intake: Any, updates: list[Update]) -> float:
    return await _take_in_raw(
        intake, [u.model_dump(mode="json", exclude_none=True) for u in updates]
    )


# ------------------------------------------------------------------ the measuring processes


Feed = Callable[[Any, list[dict[str, Any]]], Awaitable[float]]


async def _with_bot(
    world: World,
    raws: Callable[[Bot], list[dict[str, Any]]],
    check: Callable[[Any, int, Counter[str]], Awaitable[None]] | None = None,
) -> float:
    """Feed ``raws(bot)`` through a fresh dispatcher and Intake on ``world``'s database."""
    from bot.app import make_dispatcher, settle_heap
    from bot.intake import Intake
    from routing.clock import utcnow
    from routing.policy.root import Policy
    from routing.store.db import make_engine, make_sessionmaker

    engine = make_engine(world.db_url)
    session = LocalSession()
    bot = Bot(TOKEN, session=session)
    try:
        sessions = make_sessionmaker(engine)
        dp = make_dispatcher(sessions, Policy(), bot)
        batch = raws(bot)
        settle_heap()  # as the bot does once it is up (bot.app.run)
        per_update = await _take_in_raw(Intake(dp, bot, sessions, utcnow), batch)
        await _check_inbox(sessions, len(batch))
        if check is not None:
            await check(sessions, len(batch), session.calls)
        calls = sum(session.calls.values()) / len(batch)
        summary = ", ".join(f"{m} {n}" for m, n in session.calls.most_common())
        print(f"  {len(batch)} updates, {calls:.2f} Bot API calls/update ({summary})",
              file=sys.stderr)  # fmt: skip
    finally:
        await engine.dispose()
    return per_update


async def _check_inbox(sessions: Any, n: int) -> None:
    from routing.store.models import INBOX_DONE, InboundUpdate

    async with sessions() as s:
        rows = dict(
            (await s.execute(
                select(InboundUpdate.status, func.count()).group_by(InboundUpdate.status)
            )).all()
        )  # fmt: skip
    if rows.get(INBOX_DONE, 0) != n or len(rows) != 1:
        raise RuntimeError(f"expected {n} updates done, the inbox holds {rows}")


async def _count_conversations(sessions: Any, status: str) -> int:
    from routing.store.models import Conversation

    async with sessions() as s:
        n = await s.scalar(
            select(func.count()).select_from(Conversation).where(Conversation.status == status)
        )
    return int(n or 0)


async def _ours(workdir: Path, size: Size, tag: str) -> float:
    """The standard mix."""
    world = await seed(workdir / f"cpu-{tag}.db", size.customers)
    traffic = Traffic(world).mixed(size.messages)
    return await _with_bot(
        world,
        lambda bot: [u.model_dump(mode="json", exclude_none=True) for u in _updates(traffic, bot)],
    )


async def _queue_chats(world: World, n: int, first_id: int) -> list[int]:
    """``n`` queued chats (ids from ``first_id``) of regular customers, oldest first, no
    manager-first reservation; returns their ids."""
    from routing.store.db import make_engine
    from routing.store.models import QUEUED, Agent, Conversation, Customer

    customers = [t - CUSTOMER_TG + 1 for t in world.regular[:n]]
    if len(customers) < n:
        raise RuntimeError(f"seed more customers: {n} queued chats need {n} regular ones")
    engine = make_engine(world.db_url)
    try:
        async with engine.begin() as conn:
            tiers = dict(
                (await conn.execute(
                    select(Customer.id, Customer.tier).where(Customer.id.in_(customers))
                )).all()
            )  # fmt: skip
            await conn.execute(
                insert(Conversation),
                [
                    {"id": first_id + i, "customer_id": cid, "status": QUEUED,
                     "tier": tiers[cid], "priority": 2, "origin": "customer_request",
                     "queued_at": NOW + timedelta(milliseconds=i), "queue_key": float(i)}
                    for i, cid in enumerate(customers)
                ],
            )  # fmt: skip
            # Every agent takes chats: online (as one who claims is), no tier restriction.
            await conn.execute(update(Agent).values(online=True, tiers=None))
    finally:
        await engine.dispose()
    return [first_id + i for i in range(n)]


async def _path(name: str, workdir: Path, size: Size, tag: str) -> float:
    """One handler path, fed as one batch of ``size.per_path`` updates of that kind."""
    from bot.keyboards import ClaimCb, NodeCb
    from routing.store.models import ASSIGNED, CLOSED, QUEUED

    n = size.per_path
    db = workdir / f"cpu-{name}-{tag}.db"
    rng_text = itertools.count(1)

    if name == "close":
        # n agents, each holding one assigned chat (seed gives agent j customer j's chat).
        world = await seed(db, max(size.customers, 2 * n), agents=n)

        async def closed(sessions: Any, n: int, _calls: Counter[str]) -> None:
            got = await _count_conversations(sessions, CLOSED)
            if got != n:
                raise RuntimeError(f"close: {got} of {n} chats closed")

        return await _with_bot(
            world,
            lambda _bot: [message_update(i + 1, a, "/close") for i, a in enumerate(world.agents)],
            closed,
        )

    world = await seed(db, size.customers)
    agents = world.agents
    if name == "self_text":
        traffic = Traffic(world)
        senders = [traffic.rng.choice(world.regular) for _ in range(n)]
        return await _with_bot(
            world,
            lambda _bot: [
                message_update(i + 1, u, f"where is my order {next(rng_text)}?")
                for i, u in enumerate(senders)
            ],
        )
    if name == "menu_press":
        data = NodeCb(id=MENU_NODE).pack()
        senders = world.regular[:n]
        return await _with_bot(
            world,
            lambda _bot: [
                callback_update(i + 1, u, data, "Main menu") for i, u in enumerate(senders)
            ],
        )
    if name in ("relay_to_agent", "relay_to_customer"):
        # The seeded assigned chats: agent j with customer j, both sides relay.
        who = world.partners if name == "relay_to_agent" else agents
        line = "any news?" if name == "relay_to_agent" else "checking it now"

        async def relayed(_sessions: Any, n: int, calls: Counter[str]) -> None:
            if calls["sendMessage"] + calls["copyMessage"] < n:
                raise RuntimeError(f"{name}: {dict(calls)} for {n} messages")

        return await _with_bot(
            world,
            lambda _bot: [
                message_update(i + 1, who[i % len(who)], f"{line} {i}") for i in range(n)
            ],
            relayed,
        )
    if name == "vip_open":
        if len(world.vips) < n:
            raise RuntimeError(f"seed more customers: {n} VIPs wanted, {len(world.vips)} seeded")
        vips = world.vips[:n]

        async def opened(sessions: Any, n: int, _calls: Counter[str]) -> None:
            got = await _count_conversations(sessions, QUEUED)
            if got != n:
                raise RuntimeError(f"vip_open: {got} of {n} chats opened")

        return await _with_bot(
            world,
            lambda _bot: [
                message_update(i + 1, v, "my order arrived broken") for i, v in enumerate(vips)
            ],
            opened,
        )
    if name in ("claim_button", "claim_next"):
        convs = await _queue_chats(world, n, first_id=10_000)
        held = len(agents)  # each agent already holds one assigned chat

        async def claimed(sessions: Any, n: int, _calls: Counter[str]) -> None:
            got = await _count_conversations(sessions, ASSIGNED) - held
            if got != n:
                raise RuntimeError(f"{name}: {got} of {n} chats claimed")

        if name == "claim_button":
            return await _with_bot(
                world,
                lambda _bot: [
                    callback_update(i + 1, agents[i % len(agents)], ClaimCb(conv=c).pack(), "Claim")
                    for i, c in enumerate(convs)
                ],
                claimed,
            )
        return await _with_bot(
            world,
            lambda _bot: [message_update(i + 1, agents[i % len(agents)], "/next")
                          for i in range(n)],
            claimed,
        )  # fmt: skip
    raise ValueError(f"unknown path {name!r}; one of {', '.join(PATHS)}")


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
    args = ["path", which] if which in PATHS else [which]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.cpu", *args, str(workdir), size_name, tag,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(
            f"bench.cpu {which} failed with exit code {proc.returncode}:\n"
            + err.decode(errors="replace")[-3000:]
        )
    for line in err.decode(errors="replace").splitlines():
        if line.startswith("  ") and ("updates," in line or "context switches" in line):
            print(f"    {which}: {line.strip()}")
    return float(out.decode().strip().splitlines()[-1])


async def run(
    size_name: str = "default", workdir: Path | None = None, path: str | None = None
) -> list[Figure]:
    """The mix and every path (``path=None``), or one of them (a name in PATHS, or "mix"),
    each against the bare aiogram floor measured in the same repetition."""
    if path is not None and path != "mix" and path not in PATHS:
        raise ValueError(f"unknown path {path!r}; one of mix, {', '.join(PATHS)}")
    size = SIZES[size_name]
    names = ["mix", *PATHS] if path is None else [path]
    ms: dict[str, list[float]] = {n: [] for n in names}
    bare: list[float] = []
    print(f"  load average at start: {loadavg()}")
    with tempfile.TemporaryDirectory(prefix="contactbot-bench-") as tmp:
        wd = workdir or Path(tmp)
        for rep in range(size.reps):
            bare.append(await _in_fresh_process("bare", wd, size_name, str(rep)))
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                which = "ours" if name == "mix" else name
                ms[name].append(await _in_fresh_process(which, wd, size_name, str(rep)))
            print(
                f"  rep {rep}: bare aiogram {bare[-1] * 1000:6.2f} ms CPU/update; "
                + ", ".join(f"{n} {ms[n][-1] * 1000:.2f}" for n in names)
            )
    floor = median(bare)
    print(f"  {'path':<18} {'ms/update':>10} {'bare/ours':>10}")
    for name in names:
        ratio = median([b / o for o, b in zip(ms[name], bare, strict=True)])
        print(f"  {name:<18} {median(ms[name]) * 1000:10.2f} {ratio:10.3f}")
    print(f"  {'bare aiogram':<18} {floor * 1000:10.2f} {1:10.3f}")
    figures: list[Figure] = []
    if "mix" in ms:
        mix_ms = median(ms["mix"]) * 1000
        ratio = median([b / o for o, b in zip(ms["mix"], bare, strict=True)])
        met = mix_ms <= GOAL_MS
        print(f"  goal: standard mix <= {GOAL_MS} ms CPU/update: {'met' if met else 'NOT met'}"
              f" ({mix_ms:.2f} ms)")  # fmt: skip
        figures += [
            Figure("cpu_contactbot_ms_per_update", mix_ms, "ms", goal=f"<= {GOAL_MS} ms",
                   met=met),
            # No goal: issue 7's ">= 0.5" was for the pipeline's ratio, not this one. Here the
            # floor is aiogram's dispatch alone (no network, no database), so the ratio is
            # context for the 1.5 ms goal above; printing "NOT met" for it misled readers.
            Figure("cpu_ratio", ratio, "bare/ours"),
        ]  # fmt: skip
    figures.append(Figure("cpu_bare_aiogram_ms_per_update", floor * 1000, "ms"))
    for name in names:
        if name == "mix":
            continue
        ratio = median([b / o for o, b in zip(ms[name], bare, strict=True)])
        figures += [
            Figure(f"cpu_path_{name}_ms_per_update", median(ms[name]) * 1000, "ms"),
            Figure(f"cpu_path_{name}_ratio", ratio, "bare/ours"),
        ]
    return figures


if __name__ == "__main__":
    # One measurement in this process, printed in seconds per update:
    #   python -m bench.cpu ours|bare WORKDIR SIZE TAG       (the mix; the floor)
    #   python -m bench.cpu path NAME WORKDIR SIZE TAG       (one handler path, see PATHS)
    if sys.argv[1] == "path":
        name, workdir, size_name, tag = sys.argv[2:6]
        Path(workdir).mkdir(parents=True, exist_ok=True)
        print(asyncio.run(_path(name, Path(workdir), SIZES[size_name], tag)))
    else:
        which, workdir, size_name, tag = sys.argv[1:5]
        Path(workdir).mkdir(parents=True, exist_ok=True)
        fn = _ours if which == "ours" else _bare
        print(asyncio.run(fn(Path(workdir), SIZES[size_name], tag)))
