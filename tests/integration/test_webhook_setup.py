"""Webhook registration at start (issue "Three instances behave as one"): idempotent across
instances, retried on 429 and 5xx, and never fatal."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot

from bot.app import make_bot
from bot.webhook_setup import register_webhook
from tests.conftest import Db
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI

URL = "https://bot.example.com/webhook"
SECRET = "s3cret"
TYPES = ["message", "callback_query"]


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    b = make_bot(DEFAULT_TOKEN, api.url)
    yield b
    await b.session.close()


async def test_three_instances_set_it_once(api: FakeBotAPI, bot: Bot, db: Db) -> None:
    for _ in range(3):
        assert await register_webhook(bot, db.sessions, URL, SECRET, TYPES)
    assert len(api.calls_of("setWebhook")) == 1 and api.webhook_url == URL
    assert len(api.calls_of("getWebhookInfo")) == 3
    # A new secret (or URL, or update types) is set again.
    assert await register_webhook(bot, db.sessions, URL, "rotated", TYPES)
    assert len(api.calls_of("setWebhook")) == 2
    assert await register_webhook(bot, db.sessions, URL, "rotated", [*TYPES, "chat_member"])
    assert len(api.calls_of("setWebhook")) == 3


async def test_unsure_means_set_again(api: FakeBotAPI, bot: Bot, sqlite_db: Db) -> None:
    api.webhook_url = URL  # set by someone, but with what secret? Nothing stored says.
    assert await register_webhook(bot, sqlite_db.sessions, URL, SECRET, TYPES)
    assert len(api.calls_of("setWebhook")) == 1


async def test_a_429_is_waited_out(
    api: FakeBotAPI, bot: Bot, sqlite_db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    api.fail_next("setWebhook", 429, retry_after=1)
    with caplog.at_level(logging.INFO, logger="bot.webhook_setup"):
        assert await register_webhook(bot, sqlite_db.sessions, URL, SECRET, TYPES)
    calls = api.calls_of("setWebhook")
    assert len(calls) == 2 and api.webhook_url == URL
    assert calls[1].at - calls[0].at >= 0.9  # retry_after honoured
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "webhook: setWebhook failed (429, retry after 1 s), attempt 1 of 6; retrying in 1 s",
        f"webhook registered: {URL}",
    ]


async def test_an_outage_is_retried_with_backoff_then_given_up_without_crashing(
    api: FakeBotAPI, bot: Bot, sqlite_db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    api.begin_outage(502)
    with caplog.at_level(logging.INFO, logger="bot.webhook_setup"):
        ok = await register_webhook(bot, sqlite_db.sessions, URL, SECRET, TYPES, sleep=sleep)
    assert ok is False and waits == [1, 2, 4, 8, 16]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "serving anyway" in errors[0].getMessage()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 5
    # The outage ends: the next start registers.
    api.end_outage()
    assert await register_webhook(bot, sqlite_db.sessions, URL, SECRET, TYPES, sleep=sleep)
    assert api.webhook_url == URL


async def test_a_refusal_is_logged_not_raised(api: FakeBotAPI, bot: Bot, sqlite_db: Db) -> None:
    api.fail_next("setWebhook", 400, "Bad Request: bad webhook: Webhook can be set up only on "
                  "ports 80, 88, 443 or 8443")  # fmt: skip
    assert await register_webhook(bot, sqlite_db.sessions, URL, SECRET, TYPES) is False
    assert len(api.calls_of("setWebhook")) == 1
