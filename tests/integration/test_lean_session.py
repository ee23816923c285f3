"""The bot's HTTP session (bot/adapters/session.py): a JSON body carrying exactly what
aiogram's form carries, answers and errors exactly as aiogram's session gives them."""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
)
from aiogram.methods import (
    AnswerCallbackQuery,
    CopyMessage,
    EditMessageText,
    GetUpdates,
    SendMessage,
    SendPhoto,
)
from aiogram.methods.base import TelegramMethod
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    LinkPreviewOptions,
    MessageEntity,
    ReplyKeyboardMarkup,
)

from bot.adapters.session import LeanSession
from bot.app import make_bot
from tests.fakes.bot_api import FakeBotAPI

KEYBOARD = InlineKeyboardMarkup(
    inline_keyboard=[
        [InlineKeyboardButton(text="Orders", callback_data="m:orders")],
        [InlineKeyboardButton(text="Site", url="https://example.com/a?b=c&d=é")],
    ]
)

METHODS: list[TelegramMethod[Any]] = [
    SendMessage(chat_id=7, text="<b>hi</b> & café", reply_markup=KEYBOARD),
    SendMessage(
        chat_id=7,
        text="plain",
        parse_mode=None,
        entities=[MessageEntity(type="bold", offset=0, length=5)],
        disable_notification=False,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
        reply_markup=ReplyKeyboardMarkup(
            keyboard=[[KeyboardButton(text="Yes")]], resize_keyboard=True
        ),
    ),
    SendMessage(chat_id="@channel", text="x", message_thread_id=0, protect_content=True),
    CopyMessage(chat_id=7, from_chat_id=8, message_id=9, caption="c"),
    EditMessageText(chat_id=7, message_id=3, text="edited", reply_markup=KEYBOARD),
    AnswerCallbackQuery(callback_query_id="abc", text="Done", show_alert=False, cache_time=0),
    GetUpdates(offset=0, timeout=25, allowed_updates=["message", "callback_query"]),
    GetUpdates(offset=5, allowed_updates=[]),
    SendPhoto(chat_id=7, photo="https://example.com/p.jpg", caption="p"),
    SendMessage(chat_id=7, text="later", extra_field_from_a_newer_api=[1, 2]),
]


def _form_fields(session: AiohttpSession, bot: Bot, method: TelegramMethod[Any]) -> dict[str, Any]:
    """aiogram's own form, each value read as Telegram reads it (JSON-encoded fields decoded)."""
    fields: dict[str, Any] = {}
    for options, _headers, value in session.build_form_data(bot, method)._fields:
        name = options["name"]
        try:
            fields[name] = json.loads(value)
        except ValueError:
            fields[name] = value
    return fields


@pytest.mark.parametrize("method", METHODS, ids=lambda m: type(m).__name__)
def test_the_json_body_carries_what_aiograms_form_carries(method: TelegramMethod[Any]) -> None:
    lean = LeanSession()
    bot = Bot("42:TEST", session=lean, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    body = lean.json_body(bot, method)
    assert body is not None
    # The form's "7" and "false" are read by Telegram as the JSON body's 7 and false.
    assert json.loads(body) == _form_fields(AiohttpSession(), bot, method)


def test_defaults_dates_and_enums_are_resolved_as_aiogram_resolves_them() -> None:
    lean = LeanSession()
    bot = Bot(
        "42:TEST",
        session=lean,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, protect_content=True),
    )
    until = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    from aiogram.methods import BanChatMember

    body = json.loads(lean.json_body(bot, SendMessage(chat_id=1, text="t")) or "")
    assert body["parse_mode"] == "HTML"
    assert body["protect_content"] is True
    ban = json.loads(
        lean.json_body(bot, BanChatMember(chat_id=1, user_id=2, until_date=until)) or ""
    )
    assert ban["until_date"] == str(round(until.timestamp()))


def test_a_file_upload_has_no_json_body() -> None:
    lean = LeanSession()
    bot = Bot("42:TEST", session=lean)
    photo = SendPhoto(chat_id=7, photo=BufferedInputFile(b"\x89PNG", filename="p.png"))
    assert lean.json_body(bot, photo) is None


def test_the_bot_is_built_on_it() -> None:
    bot = make_bot("42:TEST", "http://127.0.0.1:1")
    assert isinstance(bot.session, LeanSession)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    bot = make_bot(api.token, api.url)  # the bot's own: LeanSession, HTML by default
    yield bot
    await bot.session.close()


async def test_a_message_goes_out_as_json_and_its_answer_is_a_message(
    api: FakeBotAPI, bot: Bot
) -> None:
    api.user_message(501, "hello")  # the chat exists for the fake
    sent = await bot.send_message(501, "<b>Hi</b> there", reply_markup=KEYBOARD)
    assert sent.message_id > 0 and sent.chat.id == 501 and sent.text == "Hi there"
    assert sent.bot is bot  # bound as aiogram binds answers: sent.answer(...) works
    assert sent.reply_markup is not None
    assert sent.reply_markup.model_dump(exclude_none=True) == KEYBOARD.model_dump(exclude_none=True)
    (call,) = api.calls_of("sendMessage")
    assert call.params["reply_markup"] == KEYBOARD.model_dump(exclude_none=True)
    assert call.params["parse_mode"] == "HTML"
    again = await sent.answer("and again")
    assert again.message_id == sent.message_id + 1


async def test_a_file_still_goes_as_a_form(api: FakeBotAPI, bot: Bot) -> None:
    api.user_message(502, "hello")
    sent = await bot.send_document(
        502, BufferedInputFile(b"report", filename="r.txt"), caption="here"
    )
    assert sent.document is not None
    (call,) = api.calls_of("sendDocument")
    assert [content for _name, content in call.files.values()] == [b"report"]


@pytest.mark.parametrize(
    ("code", "error"),
    [(429, TelegramRetryAfter), (403, TelegramForbiddenError), (400, TelegramBadRequest)],
)
async def test_errors_are_aiograms(
    api: FakeBotAPI, bot: Bot, code: int, error: type[Exception]
) -> None:
    api.user_message(503, "hello")
    api.fail_next("sendMessage", code, retry_after=3 if code == 429 else None)
    with pytest.raises(error) as raised:
        await bot.send_message(503, "x")
    if isinstance(raised.value, TelegramRetryAfter):
        assert raised.value.retry_after == 3


async def test_an_unreachable_api_is_a_network_error() -> None:
    bot = make_bot("42:TEST", "http://127.0.0.1:9")
    try:
        with pytest.raises(TelegramNetworkError):
            await bot.send_message(1, "x")
    finally:
        await bot.session.close()


async def test_an_answer_that_is_not_json_is_aiogram_s_decode_error(api: FakeBotAPI) -> None:
    from aiogram.exceptions import ClientDecodeError
    from aiohttp import web

    async def garbage(_request: web.Request) -> web.Response:
        return web.Response(text="<html>bad gateway</html>", status=200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", garbage)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    bot = make_bot("42:TEST", f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(ClientDecodeError):
            await bot.send_message(1, "x")
    finally:
        await bot.session.close()
        await runner.cleanup()
