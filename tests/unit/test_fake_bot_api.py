"""The fake Bot API, driven by real aiogram, so e2e tests can trust what it answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandStart
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    ReplyParameters,
    Update,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from pydantic import ValidationError

from tests.fakes.bot_api import FakeBotAPI

USER = 1001
OTHER = 2002


class _LocalSession(AiohttpSession):
    """AiohttpSession.close() sleeps 250 ms for TLS shutdown; plain local HTTP doesn't need it,
    and a dozen tests x 250 ms would blow the time budget."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def make_bot(api: FakeBotAPI, token: str | None = None) -> Bot:
    server = TelegramAPIServer.from_base(api.url)
    return Bot(token or api.token, session=_LocalSession(api=server))


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    bot = make_bot(api)
    yield bot
    await bot.session.close()


def keyboard(*data: str) -> InlineKeyboardMarkup:
    buttons = [[InlineKeyboardButton(text=d.title(), callback_data=d)] for d in data]
    return InlineKeyboardMarkup(inline_keyboard=buttons)


async def test_get_me(bot: Bot, api: FakeBotAPI) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "contactbot_test_bot")
    assert api.calls[-1].method == "getMe" and api.calls[-1].ok


async def test_send_message_with_keyboard_then_edit(bot: Bot, api: FakeBotAPI) -> None:
    sent = await bot.send_message(USER, "Pick one", reply_markup=keyboard("yes", "no"))
    assert sent.chat.id == USER and sent.chat.type == "private"
    assert sent.from_user is not None and sent.from_user.id == 123456
    assert sent.reply_markup is not None
    assert sent.reply_markup.model_dump() == keyboard("yes", "no").model_dump()
    call = api.calls_of("sendMessage")[-1]
    assert call.params["chat_id"] == USER  # normalised from the form string "1001"
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "yes"

    edited = await bot.edit_message_text("Picked yes", chat_id=USER, message_id=sent.message_id)
    assert isinstance(edited, Message) and edited.text == "Picked yes"
    assert edited.reply_markup is None  # like Telegram: no reply_markup in the edit drops it
    assert api.message(USER, sent.message_id)["text"] == "Picked yes"
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Picked yes", chat_id=USER, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=999)


async def test_message_ids_are_shared_per_chat(bot: Bot, api: FakeBotAPI) -> None:
    first = api.user_message(USER, "hi")
    reply = await bot.send_message(USER, "hello")
    second = api.user_message(USER, "again")
    other = await bot.send_message(OTHER, "elsewhere")
    assert [first["message_id"], reply.message_id, second["message_id"]] == [1, 2, 3]
    assert other.message_id == 1
    assert [m["message_id"] for m in api.messages_in(USER)] == [1, 2, 3]
    assert [c.params["text"] for c in api.sent_to(USER)] == ["hello"]


async def test_copy_user_photo_keeps_file_id(bot: Bot, api: FakeBotAPI) -> None:
    photo = api.user_message(USER, photo="PHOTO-ID-1", caption="my receipt")
    copy = await bot.copy_message(OTHER, from_chat_id=USER, message_id=photo["message_id"])
    stored = api.message(OTHER, copy.message_id)
    assert stored["photo"][-1]["file_id"] == "PHOTO-ID-1"
    assert stored["caption"] == "my receipt"
    assert stored["from"]["is_bot"] is True
    assert api.sent_to(OTHER)[0].method == "copyMessage"

    # copying with a new caption, as a reply to a message in the target chat
    anchor = await bot.send_message(OTHER, "ticket #7")
    again = await bot.copy_message(
        OTHER,
        from_chat_id=USER,
        message_id=photo["message_id"],
        caption="from customer",
        reply_parameters=ReplyParameters(message_id=anchor.message_id),
    )
    stored = api.message(OTHER, again.message_id)
    assert stored["caption"] == "from customer"
    assert stored["reply_to_message"]["text"] == "ticket #7"


async def test_copy_unknown_message_is_bad_request(bot: Bot, api: FakeBotAPI) -> None:
    with pytest.raises(TelegramBadRequest, match="message to copy not found"):
        await bot.copy_message(OTHER, from_chat_id=USER, message_id=42)
    call = api.calls[-1]
    assert (call.ok, call.error_code) == (False, 400)
    assert api.sent_to(OTHER) == []


async def test_send_photo_by_file_id_and_by_upload(bot: Bot, api: FakeBotAPI) -> None:
    by_id = await bot.send_photo(USER, "AgACAgIAAxk-existing", caption="<b>Invoice</b>")
    assert by_id.photo is not None and by_id.photo[-1].file_id == "AgACAgIAAxk-existing"
    assert by_id.caption == "<b>Invoice</b>"  # no parse_mode: text is kept literally

    upload = BufferedInputFile(b"%PDF-1.4 fake", filename="invoice.pdf")
    doc = await bot.send_document(USER, upload, caption="<b>Invoice</b>", parse_mode="HTML")
    assert doc.document is not None and doc.document.file_name == "invoice.pdf"
    assert doc.caption == "Invoice"  # HTML rendered to what the user sees
    call = api.calls_of("sendDocument")[-1]
    assert [content for _, content in call.files.values()] == [b"%PDF-1.4 fake"]
    file = await bot.get_file(doc.document.file_id)
    assert file.file_path is not None


async def test_parse_mode_mistakes_are_rejected(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(USER, "a <tag> b", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="reserved"):
        await bot.send_message(USER, "Thanks. Bye!", parse_mode="MarkdownV2")
    ok = await bot.send_message(USER, r"Thanks\. *Bye*\!", parse_mode="MarkdownV2")
    assert ok.message_id == 1


async def test_get_updates_long_poll_and_offset(bot: Bot, api: FakeBotAPI) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.05)
    assert not poll.done()
    loop = asyncio.get_running_loop()
    queued_at = loop.time()
    api.user_message(USER, "/start", username="alice")
    updates = await asyncio.wait_for(poll, 2)
    assert loop.time() - queued_at < 0.5  # woken by the update, not by the timeout
    assert [u.update_id for u in updates] == [1]
    message = updates[0].message
    assert message is not None and message.text == "/start"
    assert message.entities is not None and message.entities[0].type == "bot_command"
    assert message.from_user is not None and message.from_user.username == "alice"

    # without confirming, the same update comes again; confirming drops it
    assert [u.update_id for u in await bot.get_updates()] == [1]
    api.user_message(USER, "two")
    assert [u.update_id for u in await bot.get_updates(offset=2)] == [2]
    assert await bot.get_updates(offset=3, timeout=0) == []
    assert api.pending_updates == []


async def test_second_poller_conflicts(bot: Bot, api: FakeBotAPI) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(bot.get_updates(timeout=5))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(first, 2)
    api.user_message(USER, "hi")
    assert len(await asyncio.wait_for(second, 2)) == 1


async def test_dispatcher_receives_message_and_button_press(api: FakeBotAPI) -> None:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("Welcome! Choose:", reply_markup=keyboard("sales", "support"))

    @router.message(Command("help"))
    async def help_(message: Message) -> None:
        await message.answer("help text")

    @router.callback_query(F.data == "support")
    async def support(query: CallbackQuery) -> None:
        await query.answer("Connecting...")
        assert isinstance(query.message, Message)
        await query.message.edit_text(f"You chose {query.data}")

    dp = Dispatcher()
    dp.include_router(router)
    polling = asyncio.create_task(dp.start_polling(make_bot(api), handle_signals=False))
    try:
        api.user_message(USER, "/start", first_name="Alice")
        welcome = await api.wait_for(
            "sendMessage", chat_id=USER, text_contains="Welcome", timeout=3
        )
        message_id = welcome.result["message_id"]

        mark = api.mark()
        query_id = api.press(USER, message_id, "support")
        answer = await api.wait_for("answerCallbackQuery", since=mark, timeout=3)
        assert answer.params["callback_query_id"] == query_id and answer.ok
        await api.wait_for("editMessageText", since=mark, text_contains="support", timeout=3)
        assert api.message(USER, message_id)["text"] == "You chose support"
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 3)
    allowed = api.calls_of("getUpdates")[0].params["allowed_updates"]
    assert sorted(allowed) == ["callback_query", "message"]


async def test_global_rate_limit_answers_429() -> None:
    async with FakeBotAPI(global_rate=2) as api:
        bot = make_bot(api)
        try:
            await bot.send_message(USER, "1")
            await bot.send_message(OTHER, "2")
            with pytest.raises(TelegramRetryAfter) as caught:
                await bot.send_message(USER, "3")
            assert caught.value.retry_after >= 1
            assert api.count_429 == 1
            assert len(api.sent_to(USER)) == 1
        finally:
            await bot.session.close()


async def test_per_chat_rate_limit_is_per_chat() -> None:
    async with FakeBotAPI(per_chat_rate=1) as api:
        bot = make_bot(api)
        try:
            await bot.send_message(USER, "1")
            await bot.send_message(OTHER, "1")  # another chat has its own window
            with pytest.raises(TelegramRetryAfter):
                await bot.copy_message(USER, from_chat_id=OTHER, message_id=1)
        finally:
            await bot.session.close()


async def test_blocked_user_is_forbidden(bot: Bot, api: FakeBotAPI) -> None:
    api.blocked.add(USER)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(USER, "hello?")
    assert (await bot.send_message(OTHER, "fine")).message_id == 1
    assert api.sent_to(USER) == []


async def test_fail_next_injects_errors(bot: Bot, api: FakeBotAPI) -> None:
    api.fail_next("sendMessage", 429, retry_after=3, times=2)
    api.fail_next("sendPhoto", 500, "Internal Server Error")
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(USER, "x")
        assert caught.value.retry_after == 3
    assert (await bot.send_message(USER, "x")).message_id == 1
    with pytest.raises(TelegramServerError):
        await bot.send_photo(USER, "some-file-id")
    assert api.count_429 == 2


async def test_wait_for_times_out_with_recent_calls(bot: Bot, api: FakeBotAPI) -> None:
    await bot.send_message(USER, "only this")
    with pytest.raises(AssertionError, match="only this"):
        await api.wait_for("sendMessage", text_contains="never sent", timeout=0.1)
    found = await api.wait_for(predicate=lambda c: c.text == "only this", timeout=0.1)
    assert found.index == 0


async def test_wrong_token_is_unauthorized(api: FakeBotAPI) -> None:
    bot = make_bot(api, token="42:not-the-right-token")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await bot.get_me()
    finally:
        await bot.session.close()


async def test_raw_requests_are_normalised(api: FakeBotAPI) -> None:
    base = f"{api.url}/bot{api.token}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/GETME") as resp:  # method names are case-insensitive
            assert (await resp.json())["result"]["id"] == 123456
        body = {"chat_id": "7", "text": "true", "disable_notification": True}
        async with http.post(f"{base}/sendmessage", json=body) as resp:
            assert (await resp.json())["result"]["text"] == "true"
        form = {"chat_id": "7", "text": "[1]", "protect_content": "true"}
        async with http.post(f"{base}/sendMessage", data=form) as resp:
            assert resp.status == 200
        async with http.post(f"{base}/sendUnicorn", data={"chat_id": "7"}) as resp:
            assert resp.status == 404
            assert await resp.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found: method not found",
            }
    json_call, form_call, unknown = api.calls[1:]
    assert json_call.method == "sendMessage" and json_call.params["chat_id"] == 7
    assert form_call.params == {"chat_id": 7, "text": "[1]", "protect_content": True}
    assert unknown.method == "sendUnicorn" and unknown.error_code == 404


async def test_user_side_helpers_and_message_lifecycle(bot: Bot, api: FakeBotAPI) -> None:
    question = await bot.send_message(USER, "Your phone?", reply_markup=keyboard("skip"))
    answer = api.user_message(
        USER,
        contact={"phone_number": "+15550001", "user_id": USER},
        reply_to_message_id=question.message_id,
    )
    assert answer["reply_to_message"]["text"] == "Your phone?"
    assert answer["contact"]["first_name"] == "User"
    voice = api.user_message(USER, voice=True)
    assert voice["voice"]["file_id"].startswith("FAKE-voice-")

    forwarded = await bot.forward_message(OTHER, USER, answer["message_id"])
    assert forwarded.contact is not None and forwarded.contact.phone_number == "+15550001"

    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("no", chat_id=USER, message_id=answer["message_id"])
    assert await bot.delete_message(USER, question.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(USER, question.message_id)
    with pytest.raises(LookupError):
        api.press(USER, question.message_id, "skip")

    with pytest.raises(TelegramBadRequest, match="query ID is invalid"):
        await bot.answer_callback_query("not-a-query")


async def test_allowed_updates_filter_discards_other_types(bot: Bot, api: FakeBotAPI) -> None:
    sent = await bot.send_message(USER, "menu", reply_markup=keyboard("a"))
    api.press(USER, sent.message_id, "a")
    api.user_message(USER, "text")
    updates = await bot.get_updates(allowed_updates=["message"])
    assert [u.message.text for u in updates if u.message] == ["text"]
    assert [u["update_id"] for u in api.discarded_updates] == [1]


async def test_wait_idle_returns_once_the_bot_is_quiet(bot: Bot, api: FakeBotAPI) -> None:
    await bot.send_message(USER, "x")
    await api.wait_idle(quiet=0.05, timeout=1)
    assert api.mark() == 1


# ---------------------------------------------------------------- albums and copyMessages


async def test_user_album_arrives_as_separate_updates_sharing_a_group(
    bot: Bot, api: FakeBotAPI
) -> None:
    album = api.user_album(USER, 3, caption="my receipts")
    updates = await bot.get_updates()
    messages = [u.message for u in updates if u.message]
    assert [m.message_id for m in messages] == [m["message_id"] for m in album] == [1, 2, 3]
    groups = {m.media_group_id for m in messages}
    assert len(groups) == 1 and None not in groups
    assert [m.caption for m in messages] == ["my receipts", None, None]
    assert all(m.photo for m in messages)
    assert len({m.photo[-1].file_id for m in messages if m.photo}) == 3
    single = api.user_message(USER, photo=True, media_group_id="77")
    assert single["media_group_id"] == "77"
    videos = api.user_album(USER, 2, kind="video")
    assert all("video" in m for m in videos)
    with pytest.raises(ValueError):
        api.user_album(USER, 11)


async def test_copy_messages_copies_an_album_in_one_call(bot: Bot, api: FakeBotAPI) -> None:
    album = api.user_album(USER, 3, caption="receipts")
    note = api.user_message(USER, "and a note")
    ids = [m["message_id"] for m in album] + [note["message_id"]]
    copies = await bot.copy_messages(OTHER, from_chat_id=USER, message_ids=ids)
    assert [c.message_id for c in copies] == [1, 2, 3, 4]
    stored = [api.message(OTHER, c.message_id) for c in copies]
    new_groups = {m.get("media_group_id") for m in stored[:3]}
    assert len(new_groups) == 1 and None not in new_groups
    assert new_groups != {album[0]["media_group_id"]}  # the copy is a new album
    assert "media_group_id" not in stored[3] and stored[3]["text"] == "and a note"
    assert [m["photo"][-1]["file_id"] for m in stored[:3]] == [
        m["photo"][-1]["file_id"] for m in album
    ]
    assert stored[0]["caption"] == "receipts" and stored[0]["from"]["is_bot"] is True
    call = api.calls_of("copyMessages")[-1]
    assert call.params["message_ids"] == ids and call.result == [
        {"message_id": i} for i in (1, 2, 3, 4)
    ]
    assert [c.method for c in api.sent_to(OTHER)] == ["copyMessages"]

    again = await bot.copy_messages(
        OTHER, from_chat_id=USER, message_ids=ids[:3], remove_caption=True, protect_content=True
    )
    first = api.message(OTHER, again[0].message_id)
    assert "caption" not in first and first["has_protected_content"] is True
    assert first["media_group_id"] not in new_groups  # every copy gets its own group


async def test_copy_messages_errors_like_telegram(bot: Bot, api: FakeBotAPI) -> None:
    a, b = api.user_message(USER, "a"), api.user_message(USER, "b")
    with pytest.raises(TelegramBadRequest, match="strictly increasing order"):
        await bot.copy_messages(OTHER, USER, [b["message_id"], a["message_id"]])
    with pytest.raises(TelegramBadRequest, match="message identifiers are not specified"):
        await bot.copy_messages(OTHER, USER, [])
    with pytest.raises(TelegramBadRequest, match="too many message identifiers"):
        await bot.copy_messages(OTHER, USER, list(range(1, 102)))
    # Telegram skips ids it can't find; only nothing to copy at all is an error
    copies = await bot.copy_messages(OTHER, USER, [a["message_id"], 40, 41])
    assert len(copies) == 1 and api.message(OTHER, copies[0].message_id)["text"] == "a"
    with pytest.raises(TelegramBadRequest, match="there are no messages to forward"):
        await bot.copy_messages(OTHER, USER, [40, 41])
    api.blocked.add(OTHER)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.copy_messages(OTHER, USER, [a["message_id"]])
    assert len(api.sent_to(OTHER)) == 1


async def test_copy_messages_is_one_rate_limited_call() -> None:
    async with FakeBotAPI(per_chat_rate=1) as api:
        bot = make_bot(api)
        try:
            album = api.user_album(USER, 5)
            ids = [m["message_id"] for m in album]
            assert len(await bot.copy_messages(OTHER, USER, ids)) == 5
            with pytest.raises(TelegramRetryAfter) as caught:
                await bot.copy_messages(OTHER, USER, ids)
            assert caught.value.retry_after >= 1
            assert api.count_429 == 1
            assert len(api.messages_in(OTHER)) == 5
        finally:
            await bot.session.close()


async def test_burst_to_one_chat_under_telegram_like_limit() -> None:
    async with FakeBotAPI(per_chat_rate=1) as api:
        bot = make_bot(api)
        try:
            source = api.user_message(USER, "forward me")
            results = await asyncio.gather(
                *(bot.copy_message(OTHER, USER, source["message_id"]) for _ in range(10)),
                return_exceptions=True,
            )
            limited = [r for r in results if isinstance(r, TelegramRetryAfter)]
            assert len(limited) == 9 and all(r.retry_after >= 1 for r in limited)
            assert len(api.sent_to(OTHER)) == 1 and api.count_429 == 9
        finally:
            await bot.session.close()


async def test_send_media_group(bot: Bot, api: FakeBotAPI) -> None:
    upload = BufferedInputFile(b"\x89PNG fake", filename="scan.png")
    sent = await bot.send_media_group(
        USER,
        [
            InputMediaPhoto(media=upload, caption="<b>Scans</b>", parse_mode="HTML"),
            InputMediaPhoto(media="AgACAgIAAxk-existing", has_spoiler=True),
        ],
    )
    assert [m.message_id for m in sent] == [1, 2]
    assert sent[0].media_group_id is not None
    assert sent[0].media_group_id == sent[1].media_group_id
    assert sent[0].caption == "Scans" and sent[1].caption is None
    assert sent[1].photo is not None and sent[1].photo[-1].file_id == "AgACAgIAAxk-existing"
    assert sent[1].has_media_spoiler is True
    assert [c.method for c in api.sent_to(USER)] == ["sendMediaGroup"]

    doc = InputMediaDocument(media="doc-file-id")
    with pytest.raises(TelegramBadRequest, match="document can't be mixed"):
        await bot.send_media_group(USER, [doc, InputMediaPhoto(media="p")])
    with pytest.raises(TelegramBadRequest, match="too many messages to send as an album"):
        await bot.send_media_group(USER, [InputMediaPhoto(media="p")] * 11)
    assert len(api.messages_in(USER)) == 2


# ---------------------------------------------------------------- outages


async def test_outage_answers_bad_gateway_to_every_method(bot: Bot, api: FakeBotAPI) -> None:
    api.begin_outage()
    assert api.in_outage
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.send_message(USER, "hello?")
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.get_updates(timeout=0)
    base = f"{api.url}/bot{api.token}"
    async with aiohttp.ClientSession() as http, http.post(f"{base}/getMe") as resp:
        assert resp.status == 502
        assert await resp.json() == {"ok": False, "error_code": 502, "description": "Bad Gateway"}
    failed = api.outage_calls()
    assert [c.method for c in failed] == ["sendMessage", "getUpdates", "getMe"]
    assert all(not c.ok and c.error_code == 502 for c in failed)
    assert api.calls_of("sendMessage")[0].outage
    assert api.sent_to(USER) == []

    api.end_outage()
    assert (await bot.send_message(USER, "back")).message_id == 1
    assert len(api.outage_calls("sendMessage")) == 1


async def test_outage_can_spare_get_updates_and_pick_methods(bot: Bot, api: FakeBotAPI) -> None:
    api.begin_outage(503, include_get_updates=False, methods={"sendMessage"})
    api.user_message(USER, "hi")
    assert len(await bot.get_updates(timeout=0)) == 1
    assert (await bot.send_photo(USER, "photo-id")).message_id == 2
    with pytest.raises(TelegramServerError, match="Service Unavailable"):
        await bot.send_message(USER, "x")
    with pytest.raises(ValueError):
        api.begin_outage(429)


async def test_outage_fails_a_waiting_long_poll_and_ends_by_itself(
    bot: Bot, api: FakeBotAPI
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.05)
    api.outage(0.2)
    with pytest.raises(TelegramServerError):
        await asyncio.wait_for(poll, 1)
    await asyncio.sleep(0.3)
    assert not api.in_outage
    assert (await bot.send_message(USER, "ok")).message_id == 1


async def test_outage_html_page_is_not_json(bot: Bot, api: FakeBotAPI) -> None:
    api.begin_outage(html=True)
    with pytest.raises(ClientDecodeError):
        await bot.get_me()
    assert api.outage_calls("getMe")[0].error_code == 502


# ---------------------------------------------------------------- raw and unparseable updates


async def test_unparseable_update_breaks_aiogram_deserialisation(bot: Bot, api: FakeBotAPI) -> None:
    api.user_message(USER, "before")
    update = api.unparseable_update(USER)
    assert update["update_id"] == 2 and update["message"]["message_id"] == 2
    with pytest.raises(ValidationError):
        Update.model_validate(update)
    with pytest.raises(ClientDecodeError):
        await bot.get_updates()
    # the raw stream still carries it, and confirming past it drops it
    base = f"{api.url}/bot{api.token}"
    async with aiohttp.ClientSession() as http, http.get(f"{base}/getUpdates") as resp:
        raw = (await resp.json())["result"]
    assert [u["update_id"] for u in raw] == [1, 2]
    assert "options" not in raw[1]["message"]["poll"]
    assert await bot.get_updates(offset=3, timeout=0) == []


async def test_queue_raw_update_takes_any_payload(bot: Bot, api: FakeBotAPI) -> None:
    broken = {"message_id": 1, "date": 0, "chat": "not-an-object", "text": "hi"}
    queued = api.queue_raw_update({"update_id": 999, "message": broken})
    assert queued == {"update_id": 1, "message": broken}
    with pytest.raises(ValidationError):
        Update.model_validate(queued)
    with pytest.raises(ClientDecodeError):
        await bot.get_updates()
    api.user_message(USER, "fine")
    assert [u.update_id for u in await bot.get_updates(offset=2)] == [2]
    with pytest.raises(ValueError):
        api.queue_raw_update({"update_id": 5})


# ---------------------------------------------------------------- webhook delivery


async def test_post_update_reaches_an_aiogram_webhook(api: FakeBotAPI) -> None:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("hello from webhook")

    dp = Dispatcher()
    dp.include_router(router)
    bot = make_bot(api)
    app = web.Application()
    SimpleRequestHandler(dp, bot, handle_in_background=False, secret_token="s3cret").register(
        app, path="/hook"
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        update = {
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": USER, "type": "private", "first_name": "A"},
                "from": {"id": USER, "is_bot": False, "first_name": "A"},
                "text": "/start",
                "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
            }
        }
        assert await api.post_update(url, update, secret="wrong") == 401
        assert await api.post_update(url, update) == 401
        assert api.calls_of("sendMessage") == []
        assert await api.post_update(url, update, secret="s3cret") == 200
        reply = await api.wait_for("sendMessage", chat_id=USER, timeout=2)
        assert reply.text == "hello from webhook"
        assert api.pending_updates == []  # getUpdates' queue is not involved
    finally:
        await runner.cleanup()
        await bot.session.close()
