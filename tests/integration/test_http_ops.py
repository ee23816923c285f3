"""The operators' routes in-process (bot/http/): /healthz, /readyz (up, and each dependency
down), /metrics (parses; moves when a chat is claimed through the real dispatcher) and the
dashboard's authentication and data."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.http.metrics import Metrics, TelegramWatch, metrics
from bot.http.server import Ops, add_routes
from routing.policy.root import Policy
from routing.store.db import make_engine, make_sessionmaker
from tests.conftest import REDIS_URL, Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI
from tests.integration.test_queue_bot import ANN, T0, VIPC, Harness, _harness

TOKEN = "wallboard-secret"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bot(url: str) -> Bot:
    return Bot(DEFAULT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(url)))


async def _client(ops: Ops) -> TestClient[Any, Any]:
    app = web.Application()
    add_routes(app, ops)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


def _ops(db: Db, **kw: Any) -> Ops:
    return Ops(
        engine=db.engine,
        sessions=db.sessions,
        policy=kw.pop("policy", Policy()),
        clock=kw.pop("clock", lambda: T0),
        metrics=kw.pop("metrics", Metrics()),
        **kw,
    )


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def client_of() -> AsyncIterator[Callable[[Ops], Any]]:
    clients: list[TestClient[Any, Any]] = []

    async def make(ops: Ops) -> TestClient[Any, Any]:
        client = await _client(ops)
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


# --- /healthz, /readyz ------------------------------------------------------------------


async def test_healthz_is_a_tiny_json(sqlite_db: Db, client_of: Any) -> None:
    client = await client_of(_ops(sqlite_db))
    r = await client.get("/healthz")
    assert r.status == 200
    body = await r.json()
    assert body["status"] == "ok" and set(body) == {"status", "uptime_seconds"}


async def test_readyz_up_probes_telegram_once_then_trusts_recent_calls(
    sqlite_db: Db, api: FakeBotAPI, client_of: Any
) -> None:
    bot = _bot(api.url)
    try:
        ops = _ops(sqlite_db, bot=bot, redis_url=REDIS_URL, stopping=lambda: False)
        client = await client_of(ops)
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 200, body
        assert body["status"] == "ready" and body["failed"] == []
        assert (
            body["checks"]["database"]["ok"] and "at head" in body["checks"]["database"]["detail"]
        )
        assert body["checks"]["telegram"] == {"ok": True, "detail": "getMe answered"}
        assert body["checks"]["intake"]["ok"]
        if REDIS_URL:
            assert body["checks"]["redis"] == {"ok": True, "detail": "PONG"}
        else:
            assert "redis" not in body["checks"]
        # A success just now (the getMe, or any call the bot made): no second probe.
        probes = len(api.calls_of("getMe"))
        r = await client.get("/readyz")
        assert r.status == 200
        assert len(api.calls_of("getMe")) == probes
        assert "last success" in (await r.json())["checks"]["telegram"]["detail"]
    finally:
        await bot.session.close()


async def test_readyz_names_the_database_when_it_is_unreachable(client_of: Any) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/nothing"
    engine = make_engine(url)
    try:
        client = await client_of(_ops(Db(url, engine, make_sessionmaker(engine))))
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 503
        assert body["failed"] == ["database"]
        assert body["checks"]["database"]["detail"].startswith("unreachable")
        # /healthz still answers: the process is alive, only not ready.
        assert (await client.get("/healthz")).status == 200
        # /metrics still answers, and says the database could not be read.
        text = await (await client.get("/metrics")).text()
        assert "contactbot_database_up 0.0" in text
    finally:
        await engine.dispose()


async def test_readyz_when_the_schema_is_not_migrated(tmp_path: Path, client_of: Any) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    try:
        client = await client_of(_ops(Db("x", engine, make_sessionmaker(engine))))
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 503 and body["failed"] == ["database"]
        assert body["checks"]["database"]["detail"].startswith("not migrated")
    finally:
        await engine.dispose()


async def test_readyz_when_redis_is_configured_but_down(sqlite_db: Db, client_of: Any) -> None:
    ops = _ops(sqlite_db, redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    client = await client_of(ops)
    r = await client.get("/readyz")
    body = await r.json()
    assert r.status == 503
    assert body["failed"] == ["redis"]
    assert body["checks"]["redis"]["detail"].startswith("unreachable")
    assert body["checks"]["database"]["ok"]


async def test_readyz_when_telegram_has_not_answered_recently(
    sqlite_db: Db, client_of: Any
) -> None:
    bot = _bot(f"http://127.0.0.1:{_closed_port()}")
    now = [1000.0]
    watch = TelegramWatch(clock=lambda: now[0])
    m = Metrics()
    m.telegram = watch
    try:
        client = await client_of(_ops(sqlite_db, bot=bot, metrics=m))
        watch.ok()
        assert (await client.get("/readyz")).status == 200  # a call 0 s ago
        now[0] += 121  # past the window: the getMe probe fails
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 503 and body["failed"] == ["telegram"]
        assert "last 121s ago" in body["checks"]["telegram"]["detail"]
        # The proxy's question: may this instance take webhooks? Telegram is reported,
        # not decisive.
        r = await client.get("/readyz?skip=telegram")
        body = await r.json()
        assert r.status == 200 and body["failed"] == []
        assert body["checks"]["telegram"]["ok"] is False
    finally:
        await bot.session.close()


async def test_readyz_while_stopping(sqlite_db: Db, client_of: Any) -> None:
    client = await client_of(_ops(sqlite_db, stopping=lambda: True))
    r = await client.get("/readyz")
    assert r.status == 503 and (await r.json())["failed"] == ["intake"]


# --- /metrics ---------------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by name and labels; parsing fails on a bad format."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def h(sqlite_db: Db) -> AsyncIterator[Harness]:
    async for x in _harness(sqlite_db, Policy()):
        yield x


async def test_metrics_parse_and_move_when_a_chat_is_claimed(h: Harness, client_of: Any) -> None:
    """The process's own metrics (the ones the bot's hooks move), through the real
    dispatcher: a VIP chat waits 42 s, Ann claims it with /next, then writes to a customer
    who blocked the bot."""
    client = await client_of(
        Ops(h.db.engine, h.db.sessions, h.policy, h.clock, bot=h.bot, metrics=metrics())
    )

    async def scrape() -> dict[Any, float]:
        r = await client.get("/metrics")
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return _samples(await r.text())

    before = await scrape()
    for name in ("contactbot_queue_length", "contactbot_queue_oldest_wait_seconds"):
        assert _value(before, name, tier="VIP") == 0
    assert _value(before, "contactbot_agents_online") == 2  # Ann and Bob
    assert _value(before, "contactbot_database_up") == 1

    await h.say(VIPC, "I need help")
    h.now = T0 + timedelta(seconds=42)
    waiting = await scrape()
    assert _value(waiting, "contactbot_queue_length", tier="VIP") == 1
    assert _value(waiting, "contactbot_queue_oldest_wait_seconds", tier="VIP") == 42
    assert _value(waiting, "contactbot_queue_length", tier="B") == 0

    await h.say(ANN, "/next")
    after = await scrape()
    assert _value(after, "contactbot_queue_length", tier="VIP") == 0
    assert _value(after, "contactbot_chats_assigned") == 1
    claims = "contactbot_claims_total"
    assert _value(after, claims, tier="VIP") == _value(before, claims, tier="VIP") + 1
    count, total = "contactbot_queue_wait_seconds_count", "contactbot_queue_wait_seconds_sum"
    assert _value(after, count, tier="VIP") == _value(before, count, tier="VIP") + 1
    assert _value(after, total, tier="VIP") == pytest.approx(_value(before, total, tier="VIP") + 42)
    bucket = "contactbot_queue_wait_seconds_bucket"
    moved = _value(after, bucket, tier="VIP", le="60.0") - _value(
        before, bucket, tier="VIP", le="60.0"
    )
    assert moved == 1
    assert _value(after, bucket, tier="VIP", le="30.0") == _value(
        before, bucket, tier="VIP", le="30.0"
    )
    # The hand-over's briefing went out through the delivery queue.
    relayed = "contactbot_relayed_messages_total"
    assert _value(after, relayed, direction="to_agent") > _value(
        before, relayed, direction="to_agent"
    )

    # Ann writes to a customer who blocked the bot: Telegram's 403 is counted.
    h.api.blocked.add(VIPC)
    await h.say(ANN, "Hello, I am looking into it")
    blocked = await scrape()
    errors = "contactbot_telegram_errors_total"
    assert _value(blocked, errors, code="403", source="delivery") == (
        _value(after, errors, code="403", source="delivery") + 1
    )


async def test_metrics_sla_events_counted_by_the_sweep(h: Harness, client_of: Any) -> None:
    client = await client_of(Ops(h.db.engine, h.db.sessions, h.policy, h.clock, metrics=metrics()))
    name = "contactbot_sla_events_total"

    async def breaches() -> float:
        text = await (await client.get("/metrics")).text()
        return _value(_samples(text), name, tier="VIP", kind="first_response", level="breach")

    before = await breaches()
    await h.say(VIPC, "Hello?")
    h.now = T0 + timedelta(seconds=61)
    await h.sweep_mark()
    assert await breaches() == before + 1
    await h.sweep_mark()  # recorded once: not counted again
    assert await breaches() == before + 1


async def test_metrics_of_a_fresh_registry_parse(sqlite_db: Db, client_of: Any) -> None:
    m = Metrics()
    m.update("message", "handled", 0.02)
    m.push_sent("csat")
    m.telegram_error(429, "push")
    m.telegram_error(502, "delivery")
    m.telegram_error(None, "delivery")
    client = await client_of(_ops(sqlite_db, metrics=m))
    r = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    text = await (await client.get("/metrics")).text()
    s = _samples(text)
    assert _value(s, "contactbot_updates_total", type="message", outcome="handled") == 1
    assert _value(s, "contactbot_update_handling_seconds_count", type="message") == 1
    assert _value(s, "contactbot_pushes_sent_total", kind="csat") == 1
    assert _value(s, "contactbot_telegram_errors_total", code="429", source="push") == 1
    assert _value(s, "contactbot_telegram_errors_total", code="5xx", source="delivery") == 1
    assert _value(s, "contactbot_telegram_errors_total", code="network", source="delivery") == 1
    assert _value(s, "contactbot_telegram_last_success_timestamp_seconds") > 0
    # Every policy tier is reported, zeros included.
    for tier in Policy().tier_names:
        assert ("contactbot_queue_length", (("tier", tier),)) in s


# --- /dashboard -------------------------------------------------------------------------


def _basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def test_dashboard_is_off_without_a_token(sqlite_db: Db, client_of: Any) -> None:
    client = await client_of(_ops(sqlite_db, dashboard_token=None))
    for path in ("/dashboard", "/dashboard/data", "/dashboard?token=", "/dashboard?token=x"):
        assert (await client.get(path)).status == 404, path
    r = await client.get("/dashboard", headers={"Authorization": "Bearer "})
    assert r.status == 404


async def test_dashboard_auth(sqlite_db: Db, client_of: Any) -> None:
    client = await client_of(_ops(sqlite_db, dashboard_token=TOKEN))
    refused: list[tuple[str, dict[str, str]]] = [
        ("/dashboard", {}),
        ("/dashboard?token=", {}),
        ("/dashboard?token=wrong", {}),
        ("/dashboard", {"Authorization": "Bearer wrong"}),
        ("/dashboard", {"Authorization": f"Bearer {TOKEN}x"}),
        ("/dashboard", {"Authorization": f"Token {TOKEN}"}),
        ("/dashboard", _basic("ops", "wrong")),
        ("/dashboard", _basic(TOKEN, "")),  # the token as user name is not the password
        ("/dashboard", {"Authorization": "Basic !!!"}),
        ("/dashboard/data", {}),
        ("/dashboard/data?token=wrong", {}),
    ]
    for path, headers in refused:
        r = await client.get(path, headers=headers)
        assert r.status == 401, (path, headers)
    page = await client.get("/dashboard")
    assert page.headers["WWW-Authenticate"].startswith("Basic ")
    assert "WWW-Authenticate" not in (await client.get("/dashboard/data")).headers

    allowed: list[tuple[str, dict[str, str]]] = [
        (f"/dashboard?token={TOKEN}", {}),
        ("/dashboard", {"Authorization": f"Bearer {TOKEN}"}),
        ("/dashboard", _basic("anyone", TOKEN)),
        # One right credential is enough.
        (f"/dashboard?token={TOKEN}", {"Authorization": "Bearer wrong"}),
    ]
    for path, headers in allowed:
        r = await client.get(path, headers=headers)
        assert r.status == 200, (path, headers)
        html = await r.text()
        assert "<title>contactbot wallboard</title>" in html
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        # Self-contained: nothing loaded from elsewhere.
        assert "http://" not in html and "https://" not in html and "src=" not in html
    r = await client.get("/dashboard/data", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200
    assert (await r.json())["tiers"] == list(Policy().tier_names)


async def test_dashboard_data_shows_the_waiting_chat(h: Harness, client_of: Any) -> None:
    client = await client_of(
        Ops(h.db.engine, h.db.sessions, h.policy, h.clock, dashboard_token=TOKEN)
    )
    await h.say(VIPC, "I need help")
    h.now = T0 + timedelta(seconds=50)
    data = await (await client.get(f"/dashboard/data?token={TOKEN}")).json()
    [chat] = data["waiting"]
    assert chat["tier"] == "VIP" and chat["customer"] == f"Cust{VIPC}"
    assert chat["waited_s"] == 50 and chat["target_s"] == 60 and chat["sla"] == "warn"
    vip = next(q for q in data["queue"] if q["tier"] == "VIP")
    assert vip == {"tier": "VIP", "waiting": 1, "oldest_wait_s": 50.0}
    assert {a["name"] for a in data["agents"]} == {"Ann", "Bob"}
    today = next(d for d in data["today"] if d["tier"] == "VIP")
    assert today["chats"] == 1 and today["sla_pending"] == 1
    assert data["now"] == datetime.isoformat(T0 + timedelta(seconds=50))
