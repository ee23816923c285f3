"""The dispatcher's error handler for Telegram refusing a reply.

Handlers answer with ``message.answer``/``bot.send_message`` directly; when Telegram says
429 (flood control), 403 (the person blocked the bot) or is briefly unavailable (5xx, the
network), the exception leaves the handler and aiogram would log it with a full traceback
("Cause exception while process update"), one per update: a flood of those buried the
log. None of these is a bug, and a reply cannot be usefully retried later (the moment has
passed; conversation content goes through the durable delivery queue instead), so they are
logged in one line and the update counts as handled. Anything else still propagates, with
its traceback.
"""

from __future__ import annotations

import logging

from aiogram import Dispatcher
from aiogram.exceptions import (
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent

__all__ = ["QUIET_ERRORS", "register", "reply_refused"]

log = logging.getLogger(__name__)

QUIET_ERRORS = (
    TelegramRetryAfter,
    TelegramForbiddenError,
    TelegramServerError,
    TelegramNetworkError,
)


async def reply_refused(event: ErrorEvent) -> bool:
    """Log a refused reply in one line (no traceback) and swallow it."""
    exc = event.exception
    where = ""
    if isinstance(exc, TelegramRetryAfter):
        where = f" (retry after {exc.retry_after} s)"
    log.warning(
        "update %s: reply not sent: %s%s: %s",
        event.update.update_id,
        type(exc).__name__,
        where,
        " ".join(str(exc).split()),  # aiogram's messages span lines
    )
    return True


def register(dp: Dispatcher) -> None:
    """``dp.errors`` handler for :data:`QUIET_ERRORS`."""
    dp.errors.register(reply_refused, ExceptionTypeFilter(*QUIET_ERRORS))
