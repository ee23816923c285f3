"""The operators' routes on an aiohttp application, in either mode.

Webhook mode adds them to the server that takes Telegram's POSTs (:func:`add_routes`);
polling mode serves them on ``CONTACTBOT_HTTP_PORT`` when it is set (:func:`serve`).

==================  =========================================================================
``/healthz``        200 ``{"status": "ok"}`` while the process answers
``/readyz``         200 when the database (migrated), Redis (if configured), Telegram (a recent
                    success) and the intake are fine; 503 with the failed checks named
``/metrics``        Prometheus text format (bot/http/metrics.py)
``/dashboard``      the wallboard, behind ``CONTACTBOT_DASHBOARD_TOKEN`` (bot/http/dashboard.py)
==================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiogram import Bot
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.http.dashboard import dashboard_routes
from bot.http.health import Readiness, healthz, readyz_handler
from bot.http.metrics import Metrics, metrics_handler
from routing.policy.root import Policy

__all__ = ["Ops", "add_routes", "serve"]


@dataclass
class Ops:
    """What the routes read: the database, the policy and clock, the services to probe."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    policy: Policy
    clock: Callable[[], datetime]
    bot: Bot | None = None
    redis_url: str | None = None
    dashboard_token: str | None = None
    stopping: Callable[[], bool] | None = None
    metrics: Metrics | None = None  # default: the process's (bot.http.metrics.metrics)


def add_routes(app: web.Application, ops: Ops) -> Readiness:
    """Add ``/healthz``, ``/readyz``, ``/metrics`` and ``/dashboard`` to ``app``; the
    readiness checker is closed with the app."""
    readiness = Readiness(
        ops.engine,
        redis_url=ops.redis_url,
        bot=ops.bot,
        watch=ops.metrics.telegram if ops.metrics is not None else None,
        stopping=ops.stopping,
    )

    async def close(_app: web.Application) -> None:
        await readiness.close()

    app.on_cleanup.append(close)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz_handler(readiness))
    app.router.add_get(
        "/metrics", metrics_handler(ops.sessions, ops.policy, ops.clock, ops.metrics)
    )
    app.router.add_routes(
        dashboard_routes(ops.dashboard_token, ops.sessions, ops.policy, ops.clock)
    )
    return readiness


async def serve(ops: Ops, host: str, port: int) -> web.AppRunner:
    """Polling mode: a small server of its own for the routes; ``cleanup()`` stops it."""
    app = web.Application()
    add_routes(app, ops)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
