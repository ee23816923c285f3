"""Assembling and running the bot: polling (default) or webhook."""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass
from datetime import timedelta

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import BotCommand, BotCommandScopeDefault
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import errors
from bot.clock import Clock, make_clock, utcnow
from bot.config import Settings
from bot.desk import Desk
from bot.handlers import get_routers
from bot.i18n import LocaleMiddleware, make_i18n
from bot.middlewares import ChatOrderMiddleware, DbSessionMiddleware
from bot.throttle import ThrottleMiddleware
from routing import db, queue
from routing.knowledge import KnowledgeIndex
from routing.models import ProcessedUpdate
from routing.policy import Policy
from routing.senders import ProcessedLog

log = logging.getLogger(__name__)

CUSTOMER_COMMANDS = [
    BotCommand(command="start", description="Identify yourself"),
    BotCommand(command="menu", description="Self-service topics"),
    BotCommand(command="human", description="Talk to a person"),
    BotCommand(command="help", description="Help"),
    BotCommand(command="stop_surveys", description="Stop receiving surveys"),
]


# Updates handled at once while polling. Unbounded, a burst of thousands of updates becomes
# thousands of tasks queueing for one SQLite connection, each holding memory and none
# finishing sooner; a bound keeps the backlog in Telegram's queue instead.
POLLING_CONCURRENCY = 64


def make_bot(token: str, api_url: str) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url))
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


def make_storage(redis_url: str | None) -> BaseStorage:
    if not redis_url:
        return MemoryStorage()
    from aiogram.fsm.storage.base import DefaultKeyBuilder
    from aiogram.fsm.storage.redis import RedisStorage

    return RedisStorage.from_url(redis_url, key_builder=DefaultKeyBuilder(with_bot_id=True))


def make_dispatcher(
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    bot: Bot,
    *,
    storage: BaseStorage | None = None,
    clock: Clock = utcnow,
) -> Dispatcher:
    dp = Dispatcher(storage=storage or MemoryStorage())
    dp.update.outer_middleware(ChatOrderMiddleware())
    processed = ProcessedLog(sessions, clock)
    dp.update.outer_middleware(DbSessionMiddleware(sessions, policy, clock, processed))
    # After DbSessionMiddleware: it needs agent / customer / open_conversation.
    dp.update.outer_middleware(ThrottleMiddleware.from_policy(policy))
    errors.register(dp)  # 429 / 403 on a reply: one log line, no traceback
    # After DbSessionMiddleware: the locale depends on the customer record it loads.
    i18n = make_i18n(policy.selfservice.default_language)
    dp.update.outer_middleware(LocaleMiddleware(i18n))
    dp.include_routers(*get_routers())
    # Workflow data: handlers receive these by parameter name.
    dp["policy"] = policy
    dp["clock"] = clock
    dp["desk"] = Desk(bot, policy, clock)
    dp["processed_log"] = processed
    # Built once per policy load, not per message.
    dp["knowledge"] = KnowledgeIndex.build(policy.selfservice.faq, policy.selfservice.search)
    return dp


@dataclass
class App:
    settings: Settings
    policy: Policy
    engine: AsyncEngine
    bot: Bot
    dp: Dispatcher
    clock: Clock


async def build_app(settings: Settings, token: str) -> App:
    policy = settings.load_policy()
    engine = db.make_engine(settings.database_url)
    # The schema is brought up to date on every start: a fresh machine needs no extra step.
    await db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    async with sessions() as s, s.begin():
        # Redelivery guard rows only matter for the last few updates.
        cutoff = utcnow() - timedelta(days=2)
        await s.execute(delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < cutoff))
        # Chats queued before the queue_key column existed get their place in the order.
        await queue.rekey_legacy(s, policy)
    bot = make_bot(token, settings.telegram_api_url)
    clock = make_clock(settings.clock_file)
    dp = make_dispatcher(
        sessions, policy, bot, storage=make_storage(settings.redis_url), clock=clock
    )
    return App(settings, policy, engine, bot, dp, clock)


def settle_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's sight.

    Imports leave hundreds of thousands of long-lived objects (aiogram's and pydantic's
    models above all) that every full collection would walk again: about 0.2 s with the
    event loop stopped, which in a survey campaign is a hundred messages not sent. Called
    once per process, when it is up: frozen objects are never collected."""
    gc.collect()
    gc.freeze()


async def _set_commands(bot: Bot) -> None:
    try:
        await bot.set_my_commands(CUSTOMER_COMMANDS, scope=BotCommandScopeDefault())
    except Exception as exc:
        log.warning("could not set the command menu: %s", exc)


def _start_scheduler(app: App) -> AsyncIOScheduler:
    from bot.scheduler import make_scheduler

    sched = make_scheduler(db.make_sessionmaker(app.engine), app.policy, app.bot, app.clock)
    sched.start()
    return sched


async def run_polling(settings: Settings, token: str) -> None:
    app = await build_app(settings, token)
    sched = _start_scheduler(app)
    try:
        me = await app.bot.get_me()
        log.info("contactbot @%s polling %s", me.username, settings.telegram_api_url)
        await _set_commands(app.bot)
        await app.bot.delete_webhook(drop_pending_updates=False)
        settle_heap()
        await app.dp.start_polling(
            app.bot,
            allowed_updates=app.dp.resolve_used_update_types(),
            tasks_concurrency_limit=POLLING_CONCURRENCY,
        )
    finally:
        sched.shutdown(wait=False)
        await app.dp["processed_log"].close()
        await app.bot.session.close()
        await app.engine.dispose()


async def run_webhook(settings: Settings, token: str) -> None:
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
    from aiohttp import web

    if not settings.webhook_url:
        raise SystemExit(
            "contactbot: --webhook needs CONTACTBOT_WEBHOOK_URL (the public HTTPS URL)"
        )
    if not settings.webhook_secret:
        raise SystemExit(
            "contactbot: --webhook needs CONTACTBOT_WEBHOOK_SECRET (Telegram's secret token)"
        )
    app = await build_app(settings, token)
    web_app = web.Application()
    SimpleRequestHandler(app.dp, app.bot, secret_token=settings.webhook_secret).register(
        web_app, path="/webhook"
    )
    setup_application(web_app, app.dp, bot=app.bot)
    await _set_commands(app.bot)
    await app.bot.set_webhook(
        settings.webhook_url.rstrip("/") + "/webhook",
        secret_token=settings.webhook_secret,
        allowed_updates=app.dp.resolve_used_update_types(),
    )
    runner = web.AppRunner(web_app)
    await runner.setup()
    site = web.TCPSite(runner, settings.webhook_host, settings.webhook_port)
    await site.start()
    log.info("contactbot webhook on %s:%s", settings.webhook_host, settings.webhook_port)
    sched = _start_scheduler(app)
    settle_heap()
    try:
        await asyncio.Event().wait()
    finally:
        sched.shutdown(wait=False)
        await app.dp["processed_log"].close()
        await runner.cleanup()
        await app.engine.dispose()
