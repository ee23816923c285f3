"""Start-up checks for ``contactbot run``, and one-line reports of the failures they catch.

Before the bot starts, :func:`preflight` checks every URL it was given and every service it
needs, each within ``CONTACTBOT_PREFLIGHT_TIMEOUT`` seconds:

* the URLs' schemes: the database's is an async driver we support, the Bot API's is
  http(s), Redis's is redis/rediss/unix;
* the database opens and answers ``SELECT 1``;
* Redis answers ``PING`` (when ``CONTACTBOT_REDIS_URL`` is set);
* the Bot API answers ``getMe`` with the token (a 401 means Telegram rejected the token).

A failure raises :class:`PreflightError` whose message is one line naming what failed and
why, never the token. :func:`describe` does the same for a failure that gets past the checks
(the database going away between the check and the migrations, the webhook port taken), and
:func:`install_log_filters` makes aiogram's polling loop log one line per failed attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Iterable
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from bot.config import Settings

__all__ = [
    "DATABASE_SCHEMES",
    "REDIS_SCHEMES",
    "TELEGRAM_SCHEMES",
    "PreflightError",
    "RetryLogFilter",
    "describe",
    "install_log_filters",
    "preflight",
]

DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
TELEGRAM_SCHEMES = ("http", "https")
REDIS_SCHEMES = ("redis", "rediss", "unix")
# What a message may carry of a service's own error text.
_MAX_REASON = 300


class PreflightError(Exception):
    """A service or URL the bot cannot start with; the message is one line for the user."""


async def preflight(settings: Settings, token: str) -> None:
    """Check the URLs and services in ``settings``; raise :class:`PreflightError` if any fails.

    The services are checked at the same time, so a machine without network learns of all
    of them at once, in one line, within one timeout."""
    limit = settings.preflight_timeout
    check_schemes(settings)
    checks: list[Awaitable[None]] = [_check_database(settings.database_url, limit)]
    if settings.redis_url:
        checks.append(_check_redis(settings.redis_url, limit))
    checks.append(_check_bot_api(settings.telegram_api_url, token, limit))
    results = await asyncio.gather(*checks, return_exceptions=True)
    failures: list[str] = []
    for result in results:
        if isinstance(result, PreflightError):
            failures.append(str(result))
        elif isinstance(result, BaseException):
            raise result
    if failures:
        raise PreflightError(_one_line("; ".join(failures), token, limit=3 * _MAX_REASON))
    desk = settings.load_policy().desk
    if desk.topics and desk.group_id is not None:
        await check_forum(settings.telegram_api_url, token, desk.group_id, limit)


async def check_forum(base: str, token: str, group_id: int, limit: float) -> None:
    """Topics mode: ``group_id`` is a forum supergroup where the bot is an administrator
    allowed to manage topics. Raises :class:`PreflightError` naming what is missing."""
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.exceptions import TelegramAPIError
    from aiogram.types import ChatMemberAdministrator

    where = f"[desk] group_id = {group_id}"
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(base)))
    try:
        try:
            chat = await bot.get_chat(group_id, request_timeout=int(limit) or 1)
            me = await bot.get_me(request_timeout=int(limit) or 1)
            member = await bot.get_chat_member(group_id, me.id, request_timeout=int(limit) or 1)
        except TelegramAPIError as exc:
            raise PreflightError(
                f"{where}: Telegram answered {_one_line(exc.message, token)}: add the bot to "
                "the staff group and check the id"
            ) from None
    finally:
        await bot.session.close()
    if chat.type != "supergroup":
        raise PreflightError(
            f"{where} is a {chat.type}, not a supergroup: enable topics in the group's settings "
            "(Telegram makes it a supergroup)"
        )
    if not chat.is_forum:
        raise PreflightError(f"{where} has topics off: enable Topics in the group's settings")
    if not isinstance(member, ChatMemberAdministrator):
        raise PreflightError(
            f"{where}: the bot is {member.status}, not an administrator: make it an admin "
            "allowed to manage topics"
        )
    if not member.can_manage_topics:
        raise PreflightError(
            f"{where}: the bot is an administrator without the right to manage topics: "
            "allow it to manage topics"
        )


def check_schemes(settings: Settings) -> None:
    """The URLs' schemes, without touching the network."""
    db_scheme = _database_scheme(settings.database_url)
    if db_scheme not in DATABASE_SCHEMES:
        raise PreflightError(
            f"CONTACTBOT_DATABASE_URL has the unsupported scheme {db_scheme!r}: use "
            "sqlite+aiosqlite:///path/to/contactbot.db or postgresql+asyncpg://user@host/db"
        )
    api = urlsplit(settings.telegram_api_url)
    if api.scheme.lower() not in TELEGRAM_SCHEMES or not api.hostname:
        raise PreflightError(
            f"CONTACTBOT_TELEGRAM_API_URL has the unsupported scheme {api.scheme!r}: "
            "use an http:// or https:// URL such as https://api.telegram.org"
            if api.scheme.lower() not in TELEGRAM_SCHEMES
            else "CONTACTBOT_TELEGRAM_API_URL names no host: use an http:// or https:// URL "
            "such as https://api.telegram.org"
        )
    if settings.redis_url:
        scheme = urlsplit(settings.redis_url).scheme.lower()
        if scheme not in REDIS_SCHEMES:
            raise PreflightError(
                f"CONTACTBOT_REDIS_URL has the unsupported scheme {scheme!r}: use "
                "redis://host:6379/0, rediss://host:6380/0 or unix:///path/to/redis.sock"
            )


def _database_scheme(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).drivername.lower()
    except ArgumentError:
        # Not a URL at all; show only what precedes "://", never a password after it.
        return url.split("://", 1)[0][:40] if "://" in url else "(none)"


# --------------------------------------------------------------------------- the checks


def _open_sqlite_file(url: str, where: str) -> None:
    """Open an SQLite file without aiosqlite first. When aiosqlite cannot open a file, it
    stops its worker thread with a message answered on the event loop, which asyncio.run may
    have closed by then: a thread traceback would follow the one-line error."""
    import sqlite3

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:" or parsed.query:
        return  # not a plain file (URI options): leave it to the driver
    try:
        sqlite3.connect(path).close()
    except sqlite3.Error as exc:
        raise PreflightError(f"cannot connect to the database at {where}: {exc}") from None


async def _check_database(url: str, limit: float) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    where = safe_database_url(url)
    _open_sqlite_file(url, where)
    try:
        # asyncpg's own connect timeout; for aiosqlite "timeout" is the busy timeout.
        engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": limit})
    except ImportError as exc:
        raise PreflightError(
            f"cannot open the database at {where}: its driver is not installed ({exc.name})"
        ) from None
    try:
        async with asyncio.timeout(limit), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except TimeoutError:
        raise PreflightError(
            f"cannot connect to the database at {where}: no answer within {limit:g}s"
        ) from None
    except Exception as exc:
        raise PreflightError(f"cannot connect to the database at {where}: {_reason(exc)}") from None
    finally:
        await engine.dispose()


async def _check_redis(url: str, limit: float) -> None:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    where = safe_url(url)
    try:
        client = Redis.from_url(
            url,
            socket_connect_timeout=limit,
            socket_timeout=limit,
            retry=Retry(NoBackoff(), 0),  # redis-py retries 3 times by default
        )
    except ValueError as exc:
        raise PreflightError(f"CONTACTBOT_REDIS_URL is not a valid Redis URL: {exc}") from None
    try:
        async with asyncio.timeout(limit):
            await cast("Awaitable[bool]", client.ping())
    except TimeoutError:
        raise PreflightError(
            f"cannot reach Redis at {where}: no answer within {limit:g}s"
        ) from None
    except Exception as exc:
        raise PreflightError(f"cannot reach Redis at {where}: {_reason(exc)}") from None
    finally:
        await client.aclose()


async def _check_bot_api(base: str, token: str, limit: float) -> None:
    import aiohttp
    from aiogram.client.telegram import TelegramAPIServer

    where = base.rstrip("/")
    url = TelegramAPIServer.from_base(base).api_url(token, "getMe")
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as http,
            http.post(url) as resp,
        ):
            status, reason = resp.status, resp.reason or ""
            body = await resp.text(errors="replace")
    except TimeoutError:
        raise PreflightError(
            f"cannot reach the Telegram Bot API at {where}: no answer within {limit:g}s"
        ) from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise PreflightError(
            f"cannot reach the Telegram Bot API at {where}: {_reason(exc, token)}"
        ) from None
    try:
        answer: Any = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise PreflightError(
            f"the Telegram Bot API at {where} answered getMe with HTTP {status} {reason} "
            "that is not a Bot API answer: check CONTACTBOT_TELEGRAM_API_URL"
        )
    if status == 401 or answer.get("error_code") == 401:
        raise PreflightError(
            f"the token was rejected by Telegram (getMe at {where}: 401 Unauthorized): "
            "check CONTACTBOT_TOKEN, or get a new token from @BotFather"
        )
    if not answer.get("ok"):
        description = _one_line(str(answer.get("description") or f"HTTP {status}"), token)
        raise PreflightError(
            f"the Telegram Bot API at {where} refused getMe: {description}"
            + (" (check CONTACTBOT_TOKEN)" if status == 404 else "")
        )


# --------------------------------------------------------------------------- messages


def safe_database_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "CONTACTBOT_DATABASE_URL"


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    except ValueError:
        return url.split("://", 1)[0] + "://..."


def _one_line(text: str, token: str | None = None, *, limit: int = _MAX_REASON) -> str:
    if token:
        text = text.replace(token, "<token>")
        secret = token.partition(":")[2]
        if len(secret) >= 8:
            text = text.replace(secret, "<token>")
    text = re.sub(r"\s*\n\s*", "; ", text.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException, token: str | None = None) -> str:
    """A library exception as a short phrase: the driver's own error, not SQLAlchemy's."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip()
    if not text or (isinstance(exc, OSError) and text == str(exc.errno)):
        text = type(exc).__name__
    # SQLAlchemy appends a "(Background on this error at: https://sqlalche.me/...)" line.
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    return _one_line(text, token)


def describe(exc: BaseException, settings: Settings, token: str | None = None) -> str | None:
    """One line for a start-up failure that got past :func:`preflight`, or None if ``exc``
    is not one we expect (a bug: let its traceback show)."""
    from aiogram.exceptions import (
        TelegramNetworkError,
        TelegramServerError,
        TelegramUnauthorizedError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError

    api = settings.telegram_api_url.rstrip("/")
    if isinstance(exc, PreflightError):
        return str(exc)  # already one line, without the token
    if isinstance(exc, TelegramUnauthorizedError):
        return "the token was rejected by Telegram: check CONTACTBOT_TOKEN"
    if isinstance(exc, TelegramNetworkError | TelegramServerError):
        return f"cannot reach the Telegram Bot API at {api}: {_reason(exc, token)}"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"cannot reach Redis at {safe_url(settings.redis_url or '')}: {_reason(exc)}"
    if isinstance(exc, DBAPIError):
        where = safe_database_url(settings.database_url)
        return f"database error at {where}: {_reason(exc, token)}"
    if isinstance(exc, OSError):
        what = _origin(exc, settings)
        return f"{what}: {_reason(exc, token)}"
    return None


def _origin(exc: BaseException, settings: Settings) -> str:
    """What an OSError came from, judged by the modules its traceback passed through."""
    modules = _traceback_modules(exc)
    if any(m.startswith("aiohttp.web") for m in modules):
        return (
            "cannot serve the webhook on "
            f"{settings.webhook_host}:{settings.webhook_port} (CONTACTBOT_WEBHOOK_PORT)"
        )
    if any(m.startswith(("asyncpg", "aiosqlite", "sqlalchemy", "alembic")) for m in modules):
        return f"cannot connect to the database at {safe_database_url(settings.database_url)}"
    if any(m.startswith("redis") for m in modules):
        return f"cannot reach Redis at {safe_url(settings.redis_url or '')}"
    if any(m.startswith(("aiogram", "aiohttp")) for m in modules):
        return f"cannot reach the Telegram Bot API at {settings.telegram_api_url.rstrip('/')}"
    return "start-up failed"


def _traceback_modules(exc: BaseException) -> list[str]:
    names: list[str] = []
    tb = exc.__traceback__
    while tb is not None:
        names.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    return names


# --------------------------------------------------------------------------- logging


def _is_transient(exc: BaseException | None) -> bool:
    """A failure of the network or of Telegram's side, which the next attempt may not meet."""
    if exc is None:
        return False
    import aiohttp
    from aiogram.exceptions import TelegramNetworkError, TelegramServerError

    return isinstance(
        exc, TelegramNetworkError | TelegramServerError | aiohttp.ClientError | OSError
    )


class RetryLogFilter(logging.Filter):
    """One log line per failed attempt of aiogram's polling loop, with no traceback.

    On a failed ``getUpdates`` aiogram logs two records: an ERROR "Failed to fetch updates -
    Error: message" and a WARNING "Sleep for N seconds and try again... (tryings = K, ...)".
    This filter keeps the error's text, drops its record, and rewrites the warning into one
    line: ``cannot fetch updates (Error: message); retrying in N s (attempt K)``. Records of
    transient network errors lose their traceback; other errors keep it."""

    _FAILED = "Failed to fetch updates"
    _SLEEP = "Sleep for "

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._pending: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if msg.startswith(self._FAILED) and isinstance(record.args, tuple):
            args = record.args
            if len(args) == 2:
                self._pending = _one_line(f"{args[0]}: {args[1]}")
                return False
        if msg.startswith(self._SLEEP) and isinstance(record.args, tuple):
            args = record.args
            delay, tries = (*args, None, None)[:2]
            if isinstance(delay, int | float) and isinstance(tries, int):
                cause, self._pending = self._pending, None
                # aiogram counts the sleeps before this one: the failed attempt is one more.
                record.msg = "cannot fetch updates%s; retrying in %.1fs (attempt %d)"
                record.args = (f" ({cause})" if cause else "", float(delay), tries + 1)
                return True
        if record.exc_info and _is_transient(record.exc_info[1]):
            # aiogram's messages already name the exception ("...\nError: message").
            record.msg = _one_line(record.getMessage())
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def install_log_filters(loggers: Iterable[str] = ("aiogram.dispatcher", "aiogram.event")) -> None:
    """Install :class:`RetryLogFilter` on aiogram's loggers (once; calling again is harmless)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RetryLogFilter) for f in logger.filters):
            logger.addFilter(RetryLogFilter())
