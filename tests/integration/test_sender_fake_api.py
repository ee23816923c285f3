"""The push sender with real aiogram against the fake Bot API enforcing Telegram-like limits."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.adapters.session import LeanSession
from bot.adapters.survey_transport import AiogramTransport
from surveys.push import Sender
from surveys.push_pacing import SenderConfig
from surveys.push_transport import (
    Outcome,
    PermanentError,
    Push,
    Result,
    RetryAfter,
    TransientError,
    Unreachable,
)
from tests.fakes.bot_api import FakeBotAPI


class _LocalSession(LeanSession):
    """No 250 ms TLS-shutdown sleep on close: it's plain local HTTP."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(global_rate=50, per_chat_rate=1) as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    bot = Bot(api.token, session=_LocalSession(api=TelegramAPIServer.from_base(api.url)))
    yield bot
    await bot.session.close()


def just_under() -> SenderConfig:
    return SenderConfig(global_rate=45, per_chat_interval=1.0, backoff_base=0.05, max_attempts=4)


def delivered_keys(api: FakeBotAPI) -> Counter[str]:
    return Counter(str(c.text) for c in api.calls_of("sendMessage") if c.ok)


async def run(bot: Bot, pushes: list[Push]) -> tuple[list[Result], float]:
    results: list[Result] = []

    async def collect(result: Result) -> None:
        results.append(result)

    stats = await Sender(AiogramTransport(bot), just_under()).run(pushes, collect)
    assert len(results) == len(pushes) == len({r.push.key for r in results})
    return results, stats.rate


async def test_just_under_the_limits_no_429_and_each_push_once(bot: Bot, api: FakeBotAPI) -> None:
    chats = list(range(5000, 5050))
    pushes = [Push(f"s{n}-{chat}", chat, f"s{n}-{chat}") for n in range(3) for chat in chats]
    results, rate = await run(bot, pushes)
    assert api.count_429 == 0
    assert all(r.outcome is Outcome.SENT and r.attempts == 1 for r in results)
    assert delivered_keys(api) == Counter(p.payload for p in pushes)
    for chat in chats:
        assert len(api.calls_of("sendMessage", chat)) == 3
    # 150 pushes in ~3.3 s alone; a pacer gone wrong (serialised, or paced per chat) is far
    # below half the limit. Not tighter: four test workers on two cores starve it (31/s seen).
    assert rate > 0.5 * 45


async def test_blocked_chats_429s_and_5xx_still_deliver_each_push_once(
    bot: Bot, api: FakeBotAPI
) -> None:
    chats = list(range(7000, 7030))
    blocked = set(chats[::6])
    api.blocked |= blocked
    pushes = [Push(f"r{n}-{chat}", chat, f"r{n}-{chat}") for n in range(2) for chat in chats]
    api.fail_next("sendMessage", 500, times=2)
    api.fail_next("sendMessage", 429, retry_after=1, chat_id=chats[3])
    api.fail_next("sendMessage", 502, chat_id=chats[4])
    results, _ = await run(bot, pushes)

    assert api.count_429 == 1  # the injected one; none from the limits
    by_key = {r.push.key: r for r in results}
    deliverable = [p for p in pushes if p.chat_id not in blocked]
    assert all(by_key[p.key].outcome is Outcome.SENT for p in deliverable)
    assert delivered_keys(api) == Counter(p.payload for p in deliverable)
    assert all(by_key[p.key].outcome is Outcome.UNREACHABLE for p in pushes if p not in deliverable)
    # After the 403 nothing more goes to a blocked chat: its second push is skipped.
    for chat in blocked:
        calls = api.calls_of("sendMessage", chat)
        assert [c.error_code for c in calls].count(403) == 1
        assert {c.text for c in calls} == {f"r0-{chat}"}


async def test_errors_are_mapped(bot: Bot, api: FakeBotAPI) -> None:
    transport = AiogramTransport(bot)
    cases: list[tuple[int, str | None, type[Exception]]] = [
        (429, None, RetryAfter),
        (403, "Forbidden: user is deactivated", Unreachable),
        (400, "Bad Request: chat not found", Unreachable),
        (400, "Bad Request: message is too long", PermanentError),
        (500, None, TransientError),
        (409, "Conflict: odd", TransientError),
    ]
    for n, (code, description, expected) in enumerate(cases):
        chat = 9000 + n
        api.fail_next("sendMessage", code, description, retry_after=2 if code == 429 else None)
        with pytest.raises(expected) as caught:
            await transport.send(Push(n, chat, "hi"))
        if isinstance(caught.value, RetryAfter):
            assert caught.value.seconds == 2


async def test_render_sends_a_keyboard(bot: Bot, api: FakeBotAPI) -> None:
    def render(push: Push) -> tuple[str, InlineKeyboardMarkup | None]:
        button = InlineKeyboardButton(text="5", callback_data=f"csat:{push.key}:5")
        return f"Rate us: {push.payload}", InlineKeyboardMarkup(inline_keyboard=[[button]])

    await AiogramTransport(bot, render).send(Push(42, 1234, "order 7"))
    call = api.calls_of("sendMessage", 1234)[0]
    assert call.text == "Rate us: order 7"
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "csat:42:5"


async def test_survey_render_sends_the_packed_keyboard_with_the_bots_defaults(
    api: FakeBotAPI,
) -> None:
    """The fast path (pre-serialised markup, lean sendMessage) sends what ``send_message``
    would: the bot's default parse mode, and a keyboard whose buttons unpack to this survey."""
    from aiogram.client.default import DefaultBotProperties

    from bot.handlers.survey import ScoreCb, render
    from surveys.outbox_claims import SurveyPush

    bot = Bot(
        api.token,
        session=_LocalSession(api=TelegramAPIServer.from_base(api.url)),
        default=DefaultBotProperties(parse_mode="HTML"),
    )
    try:
        transport = AiogramTransport(bot, render)
        first = await transport.send(Push(1, 555, SurveyPush(77, "nps", 1, None)))
        second = await transport.send(Push(2, 556, SurveyPush(78, "csat", 2, None)))
    finally:
        await bot.session.close()
    nps, csat = api.calls_of("sendMessage", 555)[0], api.calls_of("sendMessage", 556)[0]
    assert first == nps.result["message_id"] and second == csat.result["message_id"]
    assert nps.params["parse_mode"] == "HTML"
    for call, sid, scores in ((nps, 77, range(11)), (csat, 78, range(1, 6))):
        buttons = [b for row in call.params["reply_markup"]["inline_keyboard"] for b in row]
        unpacked = [ScoreCb.unpack(b["callback_data"]) for b in buttons]
        assert [(cb.id, cb.score) for cb in unpacked] == [(sid, n) for n in scores]
        assert [b["text"] for b in buttons] == [str(n) for n in scores]
