"""The aiogram side of the push sender: one ``sendMessage`` per push, and Telegram's
answers translated into the error types :mod:`surveys.dispatch` acts on."""

from __future__ import annotations

from collections.abc import Callable

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import InlineKeyboardMarkup

from surveys.dispatch import PermanentError, Push, RetryAfter, TransientError, Unreachable

__all__ = ["AiogramTransport", "Render"]

Render = Callable[[Push], tuple[str, InlineKeyboardMarkup | None]]

# 400s that mean the person can't be reached rather than that the message is wrong.
_UNREACHABLE_400 = ("chat not found", "user not found", "peer_id_invalid", "user is deactivated")


def _text_only(push: Push) -> tuple[str, InlineKeyboardMarkup | None]:
    return str(push.payload), None


class AiogramTransport:
    """:class:`surveys.dispatch.Transport` over ``bot.send_message``."""

    def __init__(self, bot: Bot, render: Render | None = None) -> None:
        self.bot = bot
        self.render = render or _text_only

    async def send(self, push: Push) -> None:
        text, markup = self.render(push)
        try:
            await self.bot.send_message(push.chat_id, text, reply_markup=markup)
        except TelegramRetryAfter as error:
            raise RetryAfter(error.retry_after, error.message) from error
        except TelegramForbiddenError as error:
            raise Unreachable(error.message) from error
        except TelegramBadRequest as error:
            if any(marker in error.message.lower() for marker in _UNREACHABLE_400):
                raise Unreachable(error.message) from error
            raise PermanentError(error.message) from error
        except (
            TelegramEntityTooLarge,  # a network error subclass, but it will never pass
            TelegramMigrateToChat,
            TelegramNotFound,
            TelegramUnauthorizedError,  # a bad token: retrying each push won't fix it
        ) as error:
            raise PermanentError(error.message) from error
        except TelegramAPIError as error:  # network, 5xx (RestartingTelegram too), the rest
            raise TransientError(error.message) from error
