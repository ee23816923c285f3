"""The aiogram side of the push sender: one ``sendMessage`` per push, and Telegram's
answers translated into the error types :mod:`surveys.push` acts on.

Built for hundreds of pushes a second from one core: the request is a lean method whose
``reply_markup`` is JSON (a render may hand over a keyboard it serialised once, as
:class:`PackedMarkup`), and the answer is parsed for the message id only. Going through
``Bot.send_message`` instead builds and dumps the pydantic keyboard and validates the whole
returned ``Message`` (its echoed keyboard included) for every push, which is what capped a
survey campaign at a fraction of the configured rate. The request goes through the bot's
session (its middlewares, its error mapping) and carries the same defaults (parse mode,
link previews, protect content) as ``send_message`` would.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any, ClassVar, cast

from aiogram import Bot
from aiogram.client.default import Default
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
from aiogram.methods.base import Response, TelegramMethod
from aiogram.types import InlineKeyboardMarkup
from pydantic import BaseModel, ConfigDict

from bot.adapters.session import LeanSession
from bot.http.metrics import metrics
from surveys.push_transport import PermanentError, Push, RetryAfter, TransientError, Unreachable

__all__ = ["AiogramTransport", "PackedMarkup", "Render"]


class PackedMarkup(str):
    """A ``reply_markup`` already serialised to Bot API JSON (e.g. from a cached template)."""

    __slots__ = ()


Render = Callable[[Push], tuple[str, InlineKeyboardMarkup | PackedMarkup | None]]


class _Sent(BaseModel):
    """The part of the returned ``Message`` the outbox records."""

    model_config = ConfigDict(extra="ignore")
    message_id: int


class _SendPacked(TelegramMethod[_Sent]):
    """``sendMessage`` with the markup as JSON and only the message id read back."""

    __returning__: ClassVar[Any] = _Sent
    __api_method__: ClassVar[str] = "sendMessage"

    chat_id: int
    text: str
    parse_mode: str | Default | None = Default("parse_mode")
    link_preview_options: Any = Default("link_preview")
    protect_content: bool | Default | None = Default("protect_content")
    disable_web_page_preview: bool | Default | None = Default("link_preview_is_disabled")
    reply_markup: str | None = None


# aiogram parametrises ``Response[method.__returning__]`` per answer; pydantic caches generic
# models weakly, so without this reference each answer would build the class anew.
_RESPONSE_TYPE = Response[_Sent]

# 400s that mean the person can't be reached rather than that the message is wrong.
_UNREACHABLE_400 = ("chat not found", "user not found", "peer_id_invalid", "user is deactivated")


def _text_only(push: Push) -> tuple[str, InlineKeyboardMarkup | None]:
    return str(push.payload), None


class AiogramTransport:
    """:class:`surveys.push.Transport` over the bot's ``sendMessage``."""

    def __init__(self, bot: Bot, render: Render | None = None) -> None:
        self.bot = bot
        self.render = render or _text_only
        self._defaults: dict[str, Any] | None = None

    async def send(self, push: Push) -> int:
        """Send the push; returns the new message's id (the outbox records it)."""
        text, markup = self.render(push)
        packed: str | None
        if markup is None or isinstance(markup, str):
            packed = markup
        else:
            packed = self.bot.session.prepare_value(markup, bot=self.bot, files={})
        try:
            sent = await self._call(push.chat_id, text, packed)
        except TelegramRetryAfter as error:
            metrics().telegram_error(429, "push")
            raise RetryAfter(error.retry_after, error.message) from error
        except TelegramForbiddenError as error:
            metrics().telegram_error(403, "push")
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
        # By kind: csat, nps, complaint (surveys.outbox_claims.SurveyPush), news (NewsPush).
        metrics().push_sent(str(getattr(push.payload, "kind", "other")))
        return sent

    def _default_fields(self) -> dict[str, Any]:
        """The bot's defaults (parse mode, link previews, protect content) as the request
        fields aiogram's own form would carry. Resolved once: a bot's defaults are fixed
        when it is built, and resolving them per push was a tenth of a push's CPU."""
        if self._defaults is None:
            session = self.bot.session
            method = _SendPacked.model_construct(chat_id=0, text="")
            fields: dict[str, Any] = {}
            for key, value in method.model_dump(warnings=False).items():
                if key in ("chat_id", "text", "reply_markup"):
                    continue
                prepared = session.prepare_value(value, bot=self.bot, files={})
                if prepared:  # what AiohttpSession.build_form_data leaves out, we leave out
                    fields[key] = prepared
            self._defaults = fields
        return self._defaults

    async def _call(self, chat_id: int, text: str, markup: str | None) -> int:
        """``bot(sendMessage)``, with the body as JSON and a successful answer read for the
        message id alone.

        The request is the bot's session's own JSON call (bot/adapters/session.py
        ``LeanSession.post_json``), with the fields aiogram's own form would carry (same
        values, same defaults resolved, once). Any answer but a plain success goes through
        aiogram's ``check_response``, so errors map exactly as for any other call. Any other
        session (or session middleware, which the bot does not use) takes the normal path.
        """
        session = self.bot.session
        if not isinstance(session, LeanSession) or len(session.middleware):
            method = _SendPacked.model_construct(chat_id=chat_id, text=text, reply_markup=markup)
            return (await self.bot(method)).message_id
        fields = {**self._default_fields(), "chat_id": str(chat_id), "text": text}
        if markup:
            fields["reply_markup"] = markup
        status, raw = await session.post_json(
            self.bot,
            _SendPacked.__api_method__,
            session.json_dumps(fields),
            lambda: self._method(chat_id, text, markup),
        )
        if status == HTTPStatus.OK:
            message_id = _message_id(session.json_loads, raw)
            if message_id is not None:
                return message_id
        response = session.check_response(
            bot=self.bot,
            method=self._method(chat_id, text, markup),
            status_code=status,
            content=raw,
        )
        return cast(_Sent, response.result).message_id

    @staticmethod
    def _method(chat_id: int, text: str, markup: str | None) -> _SendPacked:
        """The method object, for aiogram's errors (built only when one is raised)."""
        return _SendPacked.model_construct(chat_id=chat_id, text=text, reply_markup=markup)


def _message_id(loads: Callable[[str], Any], raw: str) -> int | None:
    """The message id of a plain successful answer; None for anything else."""
    try:
        data = loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("ok") is not True:
        return None
    result = data.get("result")
    message_id = result.get("message_id") if isinstance(result, dict) else None
    return message_id if type(message_id) is int else None
