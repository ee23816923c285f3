"""``contactbot run`` (start the bot) and ``contactbot db upgrade``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli.database import safe_url, with_engine
from bot.cli.output import err, out
from bot.config import Settings


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import DBAPIError

    from bot.preflight import PreflightError, describe, install_log_filters, preflight

    token = settings.require_token()
    settings.load_policy()  # fail fast, before touching the network
    # Logging is set up by main() (bot/logs.py). A failed getUpdates is one log line per
    # attempt, not two lines or a traceback.
    install_log_filters()

    async def start() -> None:
        await preflight(settings, token)
        from bot.app import run_polling, run_webhook  # after the checks: a failure is quick

        await (run_webhook if args.webhook else run_polling)(settings, token)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(start())
    except (
        PreflightError,
        DBAPIError,
        OSError,
        TelegramNetworkError,
        TelegramUnauthorizedError,
        RedisConnectionError,
    ) as exc:
        # Expected when a service is down or a port taken: one line, not a traceback.
        message = describe(exc, settings, token)
        if message is None:  # pragma: no cover - describe() knows every type caught here
            raise
        err.print(f"contactbot: {message}", markup=False)
        return 3
    return 0


def cmd_db(settings: Settings, _args: argparse.Namespace) -> int:
    async def work(engine: AsyncEngine) -> None:
        return None  # with_engine already upgraded

    asyncio.run(with_engine(settings, work))
    out.print(f"database at {safe_url(settings.database_url)} is up to date")
    return 0
