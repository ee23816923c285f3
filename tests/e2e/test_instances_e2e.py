"""Real bot processes (issue "Three instances behave as one"): a second bot on one SQLite
file is refused with one line; a 429 on setWebhook at start does not stop the instance."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import aiohttp

from tests.e2e.conftest import ROOT, Env

SECRET = "e2e-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_second_bot_on_the_same_sqlite_file_is_refused(env: Env) -> None:
    await env.bot.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env.bot.env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode(errors="replace")
    assert proc.returncode == 1, text
    refusal = [ln for ln in text.splitlines() if "another instance" in ln]
    assert len(refusal) == 1 and "Traceback" not in text, text
    assert refusal[0].startswith("contactbot: another instance is running on this database (")
    # The first one is untouched, and after it stops a new one starts.
    assert await env.bot.stop() == 0
    await env.bot.start()


async def test_a_429_on_set_webhook_is_waited_out_and_the_instance_serves(env: Env) -> None:
    port = _free_port()
    env.bot.env |= {
        "CONTACTBOT_WEBHOOK_URL": f"http://127.0.0.1:{port}",
        "CONTACTBOT_WEBHOOK_SECRET": SECRET,
        "CONTACTBOT_WEBHOOK_HOST": "127.0.0.1",
        "CONTACTBOT_WEBHOOK_PORT": str(port),
    }
    api = env.api
    api.fail_next("setWebhook", 429, retry_after=1)
    log = env.bot.log_path.open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--webhook", env=env.bot.env, cwd=ROOT,
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        for _ in range(900):
            if api.webhook_url or proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert api.webhook_url == f"http://127.0.0.1:{port}/webhook", env.bot.log()
        assert len(api.calls_of("setWebhook")) == 2
        api.user_message(8001, "/help")
        update = api.pending_updates[-1]
        mark = api.mark()
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/webhook"
            async with http.post(url, json=update, headers=headers) as r:
                assert r.status == 200
        await api.wait_for("sendMessage", chat_id=8001, since=mark, timeout=30)
        assert proc.returncode is None
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
    assert "webhook: setWebhook failed (429, retry after 1 s), attempt 1 of 6" in env.bot.log()
