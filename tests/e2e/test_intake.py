"""Updates survive the process: a SIGKILL right after a burst, a SIGTERM after the webhook
accepted hundreds, and an update aiogram cannot parse (real bot process, fake Bot API)."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from typing import Any

import aiohttp
from sqlalchemy import func, select

from routing.store.models import INBOX_QUARANTINED, Conversation, InboundUpdate
from tests.e2e.conftest import ROOT, Env

SECRET = "s3cret-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _count(env: Env, stmt: Any) -> int:
    async def work(s: Any) -> int:
        return int(await s.scalar(stmt) or 0)

    result: int = await env.query(work)
    return result


async def _answered(env: Env, users: list[int], timeout: float = 60) -> set[int]:  # noqa: ASYNC109
    """Users who got at least one message from the bot, once all have or time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        done = {u for u in users if env.api.sent_to(u)}
        if len(done) == len(users) or loop.time() > deadline:
            return done
        await asyncio.sleep(0.2)


async def test_sigkill_right_after_a_burst_loses_no_update(env: Env) -> None:
    """12 VIPs write at once; the bot is SIGKILLed 0.1 s after it fetched their updates.
    Before the inbox, the next getUpdates offset had already confirmed updates still being
    handled: conversations were missing and customers never answered."""
    vips = list(range(5001, 5013))
    for i, tg in enumerate(vips):
        await env.add_customer(external_id=f"V{i}", name=f"Vip {i}", tier="VIP", telegram_id=tg)
    await env.bot.start()
    api = env.api
    mark = api.mark()
    for tg in vips:
        for n in range(3):
            api.user_message(tg, f"message {n} from {tg}")
    await api.wait_for("getUpdates", since=mark, predicate=lambda c: bool(c.result))
    await asyncio.sleep(0.1)
    await env.bot.kill()

    await env.bot.start()
    assert await _answered(env, vips) == set(vips), env.bot.log()
    # Every customer has exactly one conversation with all three messages in it.
    assert await _count(env, select(func.count()).select_from(Conversation)) == len(vips)
    assert await _count(env, select(func.count()).select_from(InboundUpdate)) == 3 * len(vips)
    pending = select(func.count()).select_from(InboundUpdate).where(InboundUpdate.status != "done")
    for _ in range(300):  # every stored update ends handled
        if await _count(env, pending) == 0:
            break
        await asyncio.sleep(0.1)
    assert await _count(env, pending) == 0


async def test_webhook_sigterm_after_300_accepted_answers_all_of_them(env: Env) -> None:
    """300 updates answered 200, then SIGTERM: the bot drains what it accepted (or leaves it
    stored for the next start) and exits cleanly; every customer gets an answer."""
    port = _free_port()
    env.bot.env |= {
        "CONTACTBOT_WEBHOOK_URL": f"http://127.0.0.1:{port}",
        "CONTACTBOT_WEBHOOK_SECRET": SECRET,
        "CONTACTBOT_WEBHOOK_HOST": "127.0.0.1",
        "CONTACTBOT_WEBHOOK_PORT": str(port),
    }
    api = env.api
    log = env.bot.log_path.open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--webhook", env=env.bot.env, cwd=ROOT,
        stdout=log, stderr=log,
    )  # fmt: skip
    users = list(range(7001, 7301))
    try:
        await api.wait_for("setWebhook", timeout=90)
        for tg in users:
            api.user_message(tg, "/help")
        updates = api.pending_updates[-len(users) :]
        url = f"http://127.0.0.1:{port}/webhook"
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # the server may need a moment after setWebhook
                try:
                    async with http.post(url, json={"update_id": 0}, headers={}) as r:
                        if r.status == 401:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)

            async def post(update: dict[str, Any]) -> int:
                async with http.post(url, json=update, headers=headers) as r:
                    return r.status

            statuses = await asyncio.gather(*(post(u) for u in updates))
        assert statuses == [200] * len(users)
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
    assert rc == 0, env.bot.log()
    assert "contactbot stopped" in env.bot.log()
    # Whatever the drain bound left is stored, and handled by the next start.
    await env.bot.start()
    assert await _answered(env, users) == set(users)


async def test_an_unparseable_update_is_quarantined_and_the_bot_goes_on(env: Env) -> None:
    await env.bot.start()
    # A message shaped for another Bot API version: aiogram cannot build an Update of it.
    bad = env.api.queue_update(
        "message",
        {"message_id": 1, "date": 0, "chat": {"id": 4242, "type": "private"}, "poll": {"x": 1}},
    )
    reply = await env.say(4343, "/help")
    assert reply.text

    async def work(s: Any) -> tuple[str, str | None]:
        row = await s.get(InboundUpdate, bad["update_id"])
        return row.status, row.error

    status, error = await env.query(work)
    assert status == INBOX_QUARANTINED and error and "validation" in error.lower()
    assert "Traceback" not in env.bot.log()


async def test_polling_sigterm_finishes_what_it_took_and_exits_cleanly(env: Env) -> None:
    """SIGTERM right after the bot fetched a burst: it stops polling, answers every update
    it took (the drain), and exits 0 within the bound."""
    await env.bot.start()
    api = env.api
    users = list(range(8001, 8101))
    mark = api.mark()
    for tg in users:
        api.user_message(tg, "/help")
    await api.wait_for("getUpdates", since=mark, predicate=lambda c: bool(c.result))
    loop = asyncio.get_running_loop()
    started = loop.time()
    rc = await env.bot.stop(signal.SIGTERM)
    assert rc == 0, env.bot.log()
    assert loop.time() - started < 14
    # Everything fetched before the signal was handled before the exit.
    fetched = {
        u["message"]["chat"]["id"]
        for c in api.calls_of("getUpdates")
        for u in (c.result or [])
        if "message" in u
    }
    assert fetched and fetched <= {u for u in users if api.sent_to(u)}
    assert "contactbot stopped (0 update(s) left" in env.bot.log()
    await env.bot.start()
    assert await _answered(env, users) == set(users)
