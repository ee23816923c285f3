"""The operators' HTTP side of a real bot process: polling mode on CONTACTBOT_HTTP_PORT
(health, readiness, /metrics moving when a chat waits, breaches and is claimed, and the
wallboard rendered by a real headless Chromium), and webhook mode serving the same routes
beside /webhook.

The browser test needs Debian's ``chromium`` (``apt-get install chromium``; .ci/run installs
it); without it that test is skipped. Its screenshot is kept in tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ROOT, Env

VIP_TG, B_TG = 611, 711
ANN = 9101
TOKEN = "wallboard-e2e-token"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as r:
        return r.status, await r.text()


async def _until(
    http: aiohttp.ClientSession,
    url: str,
    check: Any,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> str:
    """GET ``url`` until ``check(status, text)`` holds; returns the text."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        try:
            status, text = await _get(http, url)
            last = (status, text[:500])
            if check(status, text):
                return text
        except aiohttp.ClientConnectionError as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url}: never as expected; last {last!r}")


async def _metric(http: aiohttp.ClientSession, base: str, want: Any, **kw: Any) -> Samples:
    text = await _until(
        http, base + "/metrics", lambda st, t: st == 200 and want(_samples(t)), **kw
    )
    return _samples(text)


async def _chromium(url: str, profile: Path, *args: str) -> str:
    """Run headless Chromium on ``url``; its stdout (the DOM with ``--dump-dom``)."""
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        # Virtual time runs on while the page fetches and its timers fire: what is dumped or
        # shot is the page after its script rendered the data.
        "--virtual-time-budget=8000",
        *args,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


async def test_polling_http_metrics_move_and_the_wallboard_renders(
    env: Env, tmp_path: Path
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env.bot.env |= {
        "CONTACTBOT_HTTP_PORT": str(port),
        "CONTACTBOT_HTTP_HOST": "127.0.0.1",
        "CONTACTBOT_DASHBOARD_TOKEN": TOKEN,
    }
    t0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    env.use_clock(t0)
    env.policy_file("[queue]\nsweep_seconds = 0.3\n")
    await env.add_customer(external_id="V-1", name="Victor Vance", tier="VIP", telegram_id=VIP_TG)
    await env.add_customer(external_id="B-1", name="Beth Brown", tier="B", telegram_id=B_TG)
    await env.add_agent(ANN, "Ann")  # offline: the chats wait
    await env.bot.start()

    async with aiohttp.ClientSession() as http:
        health = await _until(http, base + "/healthz", lambda st, _: st == 200)
        assert '"status": "ok"' in health
        await _until(http, base + "/readyz", lambda st, _: st == 200)
        before = await _metric(http, base, lambda s: True)
        assert _value(before, "contactbot_queue_length", tier="VIP") == 0
        assert _value(before, "contactbot_claims_total", tier="VIP") == 0

        # A VIP writes (human queue at once) and a B customer asks for a person.
        await env.say(VIP_TG, "my order is late")
        await env.say(B_TG, "/human")
        waiting = await _metric(
            http,
            base,
            lambda s: (
                _value(s, "contactbot_queue_length", tier="VIP") == 1
                and _value(s, "contactbot_queue_length", tier="B") == 1
            ),
        )
        assert _value(waiting, "contactbot_updates_total", type="message", outcome="handled") >= 2
        assert _value(waiting, "contactbot_update_handling_seconds_count", type="message") >= 2

        # 75 s on the bot's clock: past the VIP's 60 s target, the sweep records a breach.
        env.set_clock(t0 + timedelta(seconds=75))
        breached = await _metric(
            http,
            base,
            lambda s: (
                _value(
                    s,
                    "contactbot_sla_events_total",
                    tier="VIP",
                    kind="first_response",
                    level="breach",
                )
                == 1
            ),
        )
        assert _value(breached, "contactbot_queue_oldest_wait_seconds", tier="VIP") == 75

        # The wallboard is refused without the token, and served with it.
        status, _ = await _get(http, base + "/dashboard")
        assert status == 401
        data = await _until(
            http, f"{base}/dashboard/data?token={TOKEN}", lambda st, t: "Victor Vance" in t
        )
        assert '"sla": "breach"' in data

        if CHROMIUM is not None:
            url = f"{base}/dashboard?token={TOKEN}"
            dom = await _chromium(url, tmp_path / "profile", "--dump-dom")
            # The page's script ran: it fetched /dashboard/data and rendered the waiting chats.
            assert 'data-loaded="1"' in dom, dom[-3000:]
            assert "Victor Vance" in dom and "Beth Brown" in dom
            assert 'class="chat" data-id="' in dom
            assert 'data-tier="VIP" data-sla="breach"' in dom
            assert 'data-tier="B" data-sla="ok"' in dom
            shot = tmp_path / "wallboard.png"
            await _chromium(url, tmp_path / "profile", f"--screenshot={shot}")
            assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(shot, ARTIFACTS / "wallboard.png")
            print(f"wallboard screenshot: {ARTIFACTS / 'wallboard.png'}")

        # Ann comes online and takes the VIP chat: the claim moves the metrics.
        await env.say(ANN, "/online")
        mark = env.api.mark()
        env.api.user_message(ANN, "/next")
        await env.api.wait_for("sendMessage", chat_id=ANN, since=mark, text_contains="You took")
        after = await _metric(
            http, base, lambda s: _value(s, "contactbot_claims_total", tier="VIP") == 1
        )
        assert _value(after, "contactbot_queue_length", tier="VIP") == 0
        assert _value(after, "contactbot_queue_length", tier="B") == 1
        assert _value(after, "contactbot_chats_assigned") == 1
        assert _value(after, "contactbot_agents_online") == 1
        assert _value(after, "contactbot_queue_wait_seconds_count", tier="VIP") == 1
        assert _value(after, "contactbot_queue_wait_seconds_sum", tier="VIP") == 75
        assert _value(after, "contactbot_queue_wait_seconds_bucket", tier="VIP", le="60.0") == 0
        assert _value(after, "contactbot_queue_wait_seconds_bucket", tier="VIP", le="120.0") == 1
        assert _value(after, "contactbot_relayed_messages_total", direction="to_agent") >= 1
        assert _value(after, "contactbot_telegram_last_success_timestamp_seconds") > 0

    if CHROMIUM is None:
        pytest.skip(
            "the wallboard's browser check needs Debian's chromium (apt-get install chromium); "
            "the HTTP checks above passed"
        )


async def test_webhook_mode_serves_the_routes_beside_the_webhook(env: Env) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env.bot.env |= {
        "CONTACTBOT_WEBHOOK_URL": base,
        "CONTACTBOT_WEBHOOK_SECRET": "hook-secret",
        "CONTACTBOT_WEBHOOK_HOST": "127.0.0.1",
        "CONTACTBOT_WEBHOOK_PORT": str(port),
        "CONTACTBOT_DASHBOARD_TOKEN": TOKEN,
    }
    log = env.bot.log_path.open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--webhook", env=env.bot.env, cwd=ROOT,
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        await env.api.wait_for("setWebhook", timeout=90)
        async with aiohttp.ClientSession() as http:
            await _until(http, base + "/healthz", lambda st, _: st == 200)
            ready = await _until(http, base + "/readyz", lambda st, _: st == 200)
            assert '"failed": []' in ready
            samples = await _metric(http, base, lambda s: True)
            assert ("contactbot_queue_length", (("tier", "VIP"),)) in samples
            assert (await _get(http, base + "/dashboard"))[0] == 401
            assert (await _get(http, f"{base}/dashboard?token={TOKEN}"))[0] == 200
            async with http.post(base + "/webhook", json={"update_id": 1}) as r:
                assert r.status == 401  # the webhook still wants Telegram's secret
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, env.bot.log()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
