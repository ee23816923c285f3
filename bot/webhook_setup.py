"""Registering the webhook: idempotent and retried, never fatal.

Every instance registers at start. ``getWebhookInfo`` first: if Telegram already has this
URL (and these update types) and the fingerprint stored in the database (a hash of url,
secret and update types: the secret cannot be read back) is this one, nothing is sent. Else
``setWebhook``. A 429 waits its ``retry_after``, a 5xx or a network error backs off (1, 2,
4 ... s); one log line per attempt. After the last attempt, or on an error a retry cannot
cure (a 400 for a bad URL), one ERROR line and the instance serves on: the webhook may well
be set already, by this instance's previous life or another instance.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.store import cluster

log = logging.getLogger(__name__)

T = TypeVar("T")
SETTING_KEY = "webhook"
ATTEMPTS = 6
MAX_DELAY = 30.0


class _GaveUp(Exception):
    pass


def fingerprint(url: str, secret: str, allowed_updates: Sequence[str]) -> str:
    raw = json.dumps([url, secret, sorted(allowed_updates)])
    return hashlib.sha256(raw.encode()).hexdigest()


async def _retried(
    what: str,
    call: Callable[[], Awaitable[T]],
    attempts: int,
    sleep: Callable[[float], Awaitable[object]],
) -> T:
    delay = 1.0
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except TelegramRetryAfter as exc:
            reason, wait = f"429, retry after {exc.retry_after} s", float(exc.retry_after)
        except (TelegramServerError, TelegramNetworkError) as exc:
            reason, wait = f"{type(exc).__name__}: {exc.message}", delay
            delay = min(delay * 2, MAX_DELAY)
        if attempt == attempts:
            raise _GaveUp(f"{what} failed {attempts} times, last: {reason}")
        log.warning(
            "webhook: %s failed (%s), attempt %d of %d; retrying in %.0f s",
            what,
            reason,
            attempt,
            attempts,
            wait,
        )
        await sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


async def register_webhook(
    bot: Bot,
    sessions: async_sessionmaker[AsyncSession],
    url: str,
    secret: str,
    allowed_updates: Sequence[str],
    *,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> bool:
    """Make Telegram deliver to ``url``; True if it is (now or already) registered."""
    wanted = fingerprint(url, secret, allowed_updates)
    try:
        info = await _retried("getWebhookInfo", bot.get_webhook_info, attempts, sleep)
        try:
            stored = await cluster.get_setting(sessions, SETTING_KEY)
        except Exception:  # unsure: set it again, which is harmless
            stored = None
        same_types = info.allowed_updates is None or sorted(info.allowed_updates) == sorted(
            allowed_updates
        )
        if info.url == url and same_types and stored == wanted:
            log.info("webhook already registered: %s", url)
            return True
        await _retried(
            "setWebhook",
            lambda: bot.set_webhook(
                url, secret_token=secret, allowed_updates=list(allowed_updates)
            ),
            attempts,
            sleep,
        )
    except (_GaveUp, TelegramAPIError) as exc:
        log.error(
            "webhook not registered (%s); serving anyway: Telegram may have it already "
            "(check getWebhookInfo), and the next start tries again",
            exc,
        )
        return False
    try:
        await cluster.put_setting(sessions, SETTING_KEY, wanted)
    except Exception as exc:
        log.warning("webhook registered, but its fingerprint was not stored: %s", exc)
    log.info("webhook registered: %s", url)
    return True
