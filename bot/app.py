"""Assembling and running the bot: polling (default) or webhook."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import BotCommand, BotCommandScopeDefault
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import errors, texts
from bot.adapters.session import LeanSession
from bot.clock import make_clock
from bot.config import Settings
from bot.delivery import Deliverer
from bot.desk import Desk
from bot.handlers import PRELOADS, get_routers
from bot.handlers import topics as desk_group
from bot.http.server import Ops, add_routes, serve
from bot.i18n import LocaleMiddleware, make_i18n, speaking
from bot.intake import Intake, redis_chat_lock
from bot.middlewares import ChatOrderMiddleware, DbSessionMiddleware, PressAnswers
from bot.on_loop import run_sync_filters_on_loop
from bot.throttle import ThrottleMiddleware
from routing.clock import Clock, utcnow
from routing.policy.root import Policy
from routing.queue import claims
from routing.selfservice.knowledge import KnowledgeIndex
from routing.store import cluster, db, inbox, update_lookup

log = logging.getLogger(__name__)


def customer_commands(language: str | None = None) -> list[BotCommand]:
    """The command menu customers see, in ``language`` (default: the source language)."""
    with speaking(language):
        return [BotCommand(command=c, description=d) for c, d in texts.customer.commands()]


def make_bot(token: str, api_url: str) -> Bot:
    session = LeanSession(api=TelegramAPIServer.from_base(api_url))
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
    # PRELOADS run after its lookup (the survey a customer's text comments on).
    dp.update.outer_middleware(DbSessionMiddleware(sessions, policy, clock, PRELOADS))
    # After DbSessionMiddleware: it needs agent / customer / open_conversation.
    dp.update.outer_middleware(ThrottleMiddleware.from_policy(policy))
    errors.register(dp)  # 429 / 403 on a reply: one log line, no traceback
    # After DbSessionMiddleware: the locale depends on the customer record it loads.
    i18n = make_i18n(policy.selfservice.default_language)
    dp.update.outer_middleware(LocaleMiddleware(i18n))
    # Every button press is answered when its handler returns (with the text a handler
    # set on its `callback_answer`, if any); handlers never call query.answer() themselves.
    dp.callback_query.middleware(PressAnswers())
    dp.include_routers(*get_routers())
    dp.include_routers(*desk_group.routers())  # topics mode's staff group (else inert)
    run_sync_filters_on_loop(dp)  # not one thread hand-off per F.text (bot/on_loop.py)
    # Workflow data: handlers receive these by parameter name.
    dp["policy"] = policy
    dp["clock"] = clock
    desk = Desk(bot, policy, clock)
    # The per-chat delivery queue's sender: handlers kick it after a commit; its sweep
    # (retries, rows a crash left) runs between start-up and shutdown.
    desk.delivery = Deliverer(
        bot, sessions, clock=clock, on_agent_unreachable=desk.agent_unreachable
    )
    dp["delivery"] = desk.delivery
    dp.startup.register(desk.delivery.on_startup)
    dp.shutdown.register(desk.delivery.on_shutdown)
    dp["desk"] = desk
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
    # One bot per SQLite file; several on PostgreSQL only if all share Redis (routing.store.db).
    has_redis = bool(settings.redis_url)
    if engine.dialect.name == "postgresql" and not has_redis:
        log.warning(
            "no CONTACTBOT_REDIS_URL: conversation state (identification by code, order-status "
            "steps) lives in this process only; run one instance, or set it for several"
        )
    try:
        heartbeat = await cluster.register_instance(sessions, has_redis=has_redis)
    except cluster.AnotherInstance as exc:
        await engine.dispose()
        raise SystemExit(f"contactbot: {exc}") from None
    heartbeat.start()
    async with sessions() as s, s.begin():
        # Handled rows guard against redelivery, which Telegram does within hours;
        # quarantined ones are kept longer for a person to look at.
        now = utcnow()
        await inbox.prune(s, now - timedelta(days=2), now - timedelta(days=30))
        # Chats queued before the queue_key column existed get their place in the order.
        await claims.rekey_legacy(s, policy)
    bot = make_bot(token, settings.telegram_api_url)
    clock = make_clock(settings.clock_file)
    dp = make_dispatcher(
        sessions, policy, bot, storage=make_storage(settings.redis_url), clock=clock
    )
    dp.shutdown.register(heartbeat.stop)  # a clean stop frees the database at once
    return App(settings, policy, engine, bot, dp, clock)


async def _warm_up(app: App) -> None:
    """What the first update would pay for, paid before updates come (update_lookup)."""
    async with db.make_sessionmaker(app.engine)() as s, s.begin():
        await update_lookup.warm_up(s, utcnow())


def settle_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's sight.

    Imports leave hundreds of thousands of long-lived objects (aiogram's and pydantic's
    models above all) that every full collection would walk again: about 0.2 s with the
    event loop stopped, which in a survey campaign is a hundred messages not sent. Called
    once per process, when it is up: frozen objects are never collected.

    First it pins aiogram's answer types (:func:`pin_answer_types`), so that they are among
    what is kept."""
    pin_answer_types()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# The collector's thresholds once the bot is up. At Python's default (a young collection
# every 700 allocations) 3,000 updates of bench cpu's mix ran 489 young, 44 middle and 3 full
# collections: 170 ms, 3.7% of their CPU. Nearly everything an update allocates is freed by
# reference counting anyway; what forms cycles (exceptions, futures) waits a little longer.
# At 10,000 the same updates ran 12 young collections: 33 ms, the longest 7 ms, as long as
# the default's full collections (issue 19; bench/RESULTS.md).
GC_THRESHOLDS = (10_000, 20, 20)


# aiogram parses every Bot API answer as ``Response[T]`` (T: the method's result type), a
# pydantic generic model built on first use. pydantic caches those weakly, so once the
# collector ran, the next call built the class again: about 1.5 ms of CPU, on most API calls
# of a busy bot (15% of its CPU in the pipeline benchmark, bench/RESULTS.md, issue 19).
_ANSWER_TYPES: dict[str, Any] = {}


def pin_answer_types() -> int:
    """Build ``Response[T]`` once for every Bot API method's result type and keep it."""
    from aiogram import methods
    from aiogram.methods.base import Response, TelegramMethod

    for name in dir(methods):
        method = getattr(methods, name)
        if not (isinstance(method, type) and issubclass(method, TelegramMethod)):
            continue
        returning = getattr(method, "__returning__", None)
        if isinstance(returning, property):  # the base class: no result type of its own
            continue
        if returning is not None and repr(returning) not in _ANSWER_TYPES:
            answer: Any = Response
            _ANSWER_TYPES[repr(returning)] = answer[returning]
    return len(_ANSWER_TYPES)


async def _set_commands(bot: Bot, language: str | None = None) -> None:
    try:
        await bot.set_my_commands(customer_commands(language), scope=BotCommandScopeDefault())
    except Exception as exc:
        log.warning("could not set the command menu: %s", exc)


def _start_scheduler(app: App) -> AsyncIOScheduler:
    from bot.scheduler import make_scheduler

    sched = make_scheduler(db.make_sessionmaker(app.engine), app.policy, app.bot, app.clock)
    sched.start()
    return sched


# Seconds a stop (SIGTERM, SIGINT) waits for the updates in flight; what is left stays
# pending in the inbox and is handled on the next start.
DRAIN_SECONDS = 10.0


def _on_stop_signals(intake: Intake) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, intake.stop)


async def _shut_down(app: App, intake: Intake, sched: AsyncIOScheduler | None) -> None:
    """Drain the updates in flight, then stop the jobs and whatever the dispatcher started
    (the delivery queue flushes there), then the connections."""
    left = await intake.drain(DRAIN_SECONDS)
    if sched is not None:
        sched.shutdown(wait=False)
    with contextlib.suppress(Exception):
        await app.dp.emit_shutdown(bot=app.bot, **_workflow(app))
    await app.bot.session.close()
    await app.engine.dispose()
    log.info("contactbot stopped (%d update(s) left for the next start)", left)


def _workflow(app: App) -> dict[str, object]:
    return {"dispatcher": app.dp, "bots": [app.bot], **app.dp.workflow_data}


def make_intake(app: App) -> Intake:
    # Several instances share a PostgreSQL database only with Redis (FSM state); then a
    # chat's updates are ordered across instances by a shared lock.
    shared = app.settings.redis_url is not None and app.engine.dialect.name == "postgresql"
    lock = redis_chat_lock(app.settings.redis_url) if shared and app.settings.redis_url else None
    return Intake(app.dp, app.bot, db.make_sessionmaker(app.engine), app.clock, chat_lock=lock)


def _start_sweeps(intake: Intake) -> asyncio.Task[None] | None:
    if intake.chat_lock is None:
        return None
    return asyncio.create_task(intake.run_sweeps())


def _ops(app: App, intake: Intake) -> Ops:
    """What /healthz, /readyz, /metrics and /dashboard read (bot/http/)."""
    return Ops(
        engine=app.engine,
        sessions=db.make_sessionmaker(app.engine),
        policy=app.policy,
        clock=app.clock,
        bot=app.bot,
        redis_url=app.settings.redis_url,
        dashboard_token=app.settings.dashboard_token,
        stopping=lambda: intake.stopping,
    )


async def run_polling(settings: Settings, token: str) -> None:
    app = await build_app(settings, token)
    intake = make_intake(app)
    _on_stop_signals(intake)
    sched: AsyncIOScheduler | None = None
    http: web.AppRunner | None = None
    try:
        # Health, metrics and the dashboard: on their own port, when one is set.
        if settings.http_port is not None:
            http = await serve(_ops(app, intake), settings.http_host, settings.http_port)
            log.info("contactbot HTTP on %s:%s", settings.http_host, settings.http_port)
        me = await app.bot.get_me()
        log.info("contactbot @%s polling %s", me.username, settings.telegram_api_url)
        await _set_commands(app.bot, app.policy.selfservice.default_language)
        await app.bot.delete_webhook(drop_pending_updates=False)
        await app.dp.emit_startup(bot=app.bot, **_workflow(app))
        sched = _start_scheduler(app)
        await _warm_up(app)
        await intake.recover()
        sweeps = _start_sweeps(intake)
        settle_heap()
        await intake.poll(app.dp.resolve_used_update_types())
        if sweeps is not None:
            await sweeps
    finally:
        try:
            await _shut_down(app, intake, sched)
        finally:
            if http is not None:
                await http.cleanup()


async def run_webhook(settings: Settings, token: str) -> None:
    if not settings.webhook_url:
        raise SystemExit(
            "contactbot: --webhook needs CONTACTBOT_WEBHOOK_URL (the public HTTPS URL)"
        )
    if not settings.webhook_secret:
        raise SystemExit(
            "contactbot: --webhook needs CONTACTBOT_WEBHOOK_SECRET (Telegram's secret token)"
        )
    app = await build_app(settings, token)
    intake = make_intake(app)
    _on_stop_signals(intake)
    web_app = web.Application()
    web_app.router.add_post("/webhook", intake.webhook_handler(settings.webhook_secret))
    add_routes(web_app, _ops(app, intake))  # /healthz, /readyz, /metrics, /dashboard
    runner = web.AppRunner(web_app, handle_signals=False)
    sched: AsyncIOScheduler | None = None
    try:
        await app.dp.emit_startup(bot=app.bot, **_workflow(app))
        await runner.setup()
        site = web.TCPSite(runner, settings.webhook_host, settings.webhook_port)
        await site.start()
        await _set_commands(app.bot, app.policy.selfservice.default_language)
        # Every instance registers; idempotent, retried, and never fatal (bot/webhook_setup.py).
        from bot.webhook_setup import register_webhook

        await register_webhook(
            app.bot,
            db.make_sessionmaker(app.engine),
            settings.webhook_url.rstrip("/") + "/webhook",
            settings.webhook_secret,
            app.dp.resolve_used_update_types(),
            attempts=settings.webhook_register_attempts,
        )
        log.info("contactbot webhook on %s:%s", settings.webhook_host, settings.webhook_port)
        sched = _start_scheduler(app)
        await _warm_up(app)
        await intake.recover()
        sweeps = _start_sweeps(intake)
        settle_heap()
        await intake.stopped()
        if sweeps is not None:
            await sweeps
    finally:
        # Stop answering first: updates that arrive now get 503 and Telegram retries them.
        try:
            await _shut_down(app, intake, sched)
        finally:
            await runner.cleanup()
