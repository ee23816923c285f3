"""``/healthz`` (the process answers) and ``/readyz`` (it can do its work now).

``/readyz`` is 200 only when all of these hold, else 503 with a JSON naming what failed:

* ``database``: a connection opens within the timeout and the schema is at alembic's head
  (an instance must not take traffic on a schema another version migrated, or none);
* ``redis``: answers ``PING`` (only when ``CONTACTBOT_REDIS_URL`` is set);
* ``telegram``: the Bot API answered one of our calls (``getUpdates``, a delivery, a push)
  within the last :data:`TELEGRAM_WINDOW` seconds; when none did (a quiet webhook
  instance), one ``getMe`` is made, at most one at a time and one per
  :data:`PROBE_COOLDOWN` seconds after a failure;
* ``intake``: the process is not stopping (a drain after SIGTERM answers 503).

The checks run concurrently, each bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from aiogram import Bot
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.http.metrics import TelegramWatch, metrics
from routing.store import db

__all__ = ["PROBE_COOLDOWN", "TELEGRAM_WINDOW", "Check", "Readiness", "healthz", "schema_heads"]

# getUpdates long-polls for 25 s (bot/intake.py): a healthy polling instance succeeds at
# least every 40 s; a quiet webhook instance is probed.
TELEGRAM_WINDOW = 120.0
PROBE_COOLDOWN = 10.0
_STARTED = time.monotonic()


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


def _short(exc: BaseException) -> str:
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text_ = " ".join(str(exc).split()) or type(exc).__name__
    text_ = text_.split(" (Background on this error at:")[0]
    return text_[:200]


@cache
def schema_heads() -> frozenset[str]:
    """The head revision(s) of the migrations shipped with this version."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(db.alembic_config("sqlite://")).get_heads())


class Readiness:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        redis_url: str | None = None,
        bot: Bot | None = None,
        watch: TelegramWatch | None = None,
        stopping: Callable[[], bool] | None = None,
        timeout: float = 3.0,
        window: float = TELEGRAM_WINDOW,
    ) -> None:
        self.engine = engine
        self.redis_url = redis_url
        self.bot = bot
        self.watch = watch if watch is not None else metrics().telegram
        self.stopping = stopping
        self.timeout = timeout
        self.window = window
        self._redis: Any = None
        self._probe_lock = asyncio.Lock()
        self._probe_failed: tuple[float, str] | None = None

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def check(self) -> dict[str, Check]:
        names: list[str] = ["database"]
        checks: list[Awaitable[Check]] = [self._bounded(self.database())]
        if self.redis_url:
            names.append("redis")
            checks.append(self._bounded(self.redis()))
        if self.bot is not None:
            names.append("telegram")
            checks.append(self._bounded(self.telegram()))
        results = dict(zip(names, await asyncio.gather(*checks), strict=True))
        if self.stopping is not None:
            stopping = self.stopping()
            results["intake"] = Check(not stopping, "stopping" if stopping else "taking updates")
        return results

    async def _bounded(self, check: Awaitable[Check]) -> Check:
        try:
            async with asyncio.timeout(self.timeout):
                return await check
        except TimeoutError:
            return Check(False, f"no answer within {self.timeout:g}s")

    async def database(self) -> Check:
        try:
            conn = await self.engine.connect()
        except Exception as exc:
            return Check(False, f"unreachable: {_short(exc)}")
        try:
            try:
                found = set((await conn.execute(text("SELECT version_num FROM alembic_version")))
                            .scalars().all())  # fmt: skip
            except Exception as exc:
                return Check(False, f"not migrated: {_short(exc)}")
        finally:
            await conn.close()
        heads = schema_heads()
        if found != heads:
            at = ", ".join(sorted(found)) or "none"
            return Check(False, f"not migrated: at {at}, head {', '.join(sorted(heads))}")
        return Check(True, f"at head {', '.join(sorted(heads))}")

    async def redis(self) -> Check:
        if self._redis is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._redis = Redis.from_url(
                cast(str, self.redis_url),
                socket_connect_timeout=self.timeout,
                socket_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
            )
        try:
            await self._redis.ping()
        except Exception as exc:
            return Check(False, f"unreachable: {_short(exc)}")
        return Check(True, "PONG")

    async def telegram(self) -> Check:
        age = self.watch.age()
        if age is not None and age <= self.window:
            return Check(True, f"last success {age:.0f}s ago")
        async with self._probe_lock:
            age = self.watch.age()  # a probe that finished while we waited counts
            if age is not None and age <= self.window:
                return Check(True, f"last success {age:.0f}s ago")
            if self._probe_failed is not None:
                at, why = self._probe_failed
                if time.monotonic() - at < PROBE_COOLDOWN:
                    return Check(False, why)
            assert self.bot is not None
            try:
                await self.bot.get_me(request_timeout=max(int(self.timeout), 1))
            except Exception as exc:
                seen = "never" if age is None else f"{age:.0f}s ago"
                why = f"no successful call within {self.window:g}s (last {seen}); getMe: " + (
                    _short(exc)
                )
                self._probe_failed = (time.monotonic(), why)
                return Check(False, why)
            self._probe_failed = None
            self.watch.ok()
            return Check(True, "getMe answered")


async def healthz(_request: web.Request) -> web.Response:
    """Alive: the event loop runs and answers."""
    return web.json_response(
        {"status": "ok", "uptime_seconds": round(time.monotonic() - _STARTED, 1)}
    )


def readyz_handler(readiness: Readiness) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def readyz(request: web.Request) -> web.Response:
        results = await readiness.check()
        # ?skip=telegram: checks still run and are reported, but do not decide. A proxy
        # routing webhooks asks this way: an instance that cannot reach Telegram outbound
        # still stores every update it is given, and pulling all instances out of rotation
        # would only make Telegram queue them (deploy/Caddyfile).
        skipped = {n.strip() for n in request.query.get("skip", "").split(",") if n.strip()}
        failed = [name for name, c in results.items() if not c.ok and name not in skipped]
        body = {
            "status": "not ready" if failed else "ready",
            "failed": failed,
            "checks": {name: c.as_json() for name, c in results.items()},
        }
        return web.json_response(body, status=503 if failed else 200)

    return readyz
