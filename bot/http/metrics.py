"""``/metrics``: the process's Prometheus metrics (prometheus_client), and the hooks that move them.

One :class:`Metrics` per process, made by :func:`metrics` (the one place a registry is
created): every instance exposes its own counters, Prometheus labels each scrape with the
instance. Counters and histograms move where things happen:

==========================================  ==========================  =====================
metric                                      labels                      moved by
==========================================  ==========================  =====================
``contactbot_claims_total``                 tier                        a won claim (bot/desk)
``contactbot_queue_wait_seconds``           tier                        the same claim: how
                                                                        long the chat waited
``contactbot_sla_events_total``             tier, kind, level           the queue and
                                                                        complaint sweeps
``contactbot_relayed_messages_total``       direction                   bot/delivery.py
``contactbot_updates_total``                type, outcome               bot/intake.py
``contactbot_update_handling_seconds``      type                        bot/intake.py
``contactbot_pushes_sent_total``            kind                        the survey transport
``contactbot_telegram_errors_total``        code, source                delivery, pushes
``contactbot_telegram_last_success_...``                                any Bot API success
==========================================  ==========================  =====================

The queue gauges (``contactbot_queue_length``, ``contactbot_queue_oldest_wait_seconds`` by
tier, ``contactbot_agents_online``, ``contactbot_chats_assigned``) are read from the database
when scraped (routing/reports/live.py): every instance reports the same numbers, so a
dashboard takes their ``max``, not their sum. The SLA events are counted by the instance
whose sweep recorded them (one per event across instances).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.policy.root import Policy
from routing.reports import live

__all__ = ["WAIT_BUCKETS", "Metrics", "TelegramWatch", "metrics", "metrics_handler"]

log = logging.getLogger(__name__)

# Seconds: VIP targets are a minute, C an hour; beyond four hours is "very long".
WAIT_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class TelegramWatch:
    """When the Bot API last answered a call of ours successfully (monotonic seconds)."""

    def __init__(self, gauge: Gauge | None = None, clock: Callable[[], float] = time.monotonic):
        self.gauge = gauge
        self.clock = clock
        self.last_ok: float | None = None

    def ok(self) -> None:
        self.last_ok = self.clock()
        if self.gauge is not None:
            self.gauge.set_to_current_time()

    def age(self) -> float | None:
        """Seconds since the last success; None: none yet."""
        return None if self.last_ok is None else self.clock() - self.last_ok


class Metrics:
    """The instruments of one process, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = reg = registry if registry is not None else CollectorRegistry()
        # Memory, CPU, open files and the garbage collector, as the default registry has.
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        self.queue_length = Gauge(
            "contactbot_queue_length",
            "Chats waiting in the queue, by tier",
            ["tier"],
            registry=reg,
        )
        self.queue_oldest = Gauge(
            "contactbot_queue_oldest_wait_seconds",
            "How long the longest-waiting chat of each tier has waited",
            ["tier"],
            registry=reg,
        )
        self.agents_online = Gauge("contactbot_agents_online", "Agents online now", registry=reg)
        self.chats_assigned = Gauge(
            "contactbot_chats_assigned", "Chats held by an agent now", registry=reg
        )
        self.database_up = Gauge(
            "contactbot_database_up",
            "1 if the last scrape could read the queue from the database, else 0",
            registry=reg,
        )
        self.queue_wait = Histogram(
            "contactbot_queue_wait_seconds",
            "How long a chat waited in the queue before an agent claimed it, by tier",
            ["tier"],
            buckets=WAIT_BUCKETS,
            registry=reg,
        )
        self.claims = Counter(
            "contactbot_claims",
            "Chats claimed by an agent (button, /next, offer)",
            ["tier"],
            registry=reg,
        )
        self.sla_events = Counter(
            "contactbot_sla_events",
            "SLA warnings and breaches, by tier, kind (chats: first_response, resolution; "
            "complaint cases: complaint_acknowledge, complaint_resolve) and level (warn, breach)",
            ["tier", "kind", "level"],
            registry=reg,
        )
        self.relayed = Counter(
            "contactbot_relayed_messages",
            "Conversation messages delivered, by direction (to_agent, to_customer)",
            ["direction"],
            registry=reg,
        )
        self.updates = Counter(
            "contactbot_updates",
            "Telegram updates, by type and outcome (handled; failed: an attempt failed and is "
            "retried; quarantined)",
            ["type", "outcome"],
            registry=reg,
        )
        self.update_seconds = Histogram(
            "contactbot_update_handling_seconds",
            "Time to handle one Telegram update (the handlers' work), by type",
            ["type"],
            buckets=HANDLING_BUCKETS,
            registry=reg,
        )
        self.pushes_sent = Counter(
            "contactbot_pushes_sent",
            "Pushes sent by the rate-limited sender, by kind (csat, nps, complaint, news)",
            ["kind"],
            registry=reg,
        )
        self.telegram_errors = Counter(
            "contactbot_telegram_errors",
            "Errors answered by the Bot API, by code (429, 403, ...) and source (delivery, push)",
            ["code", "source"],
            registry=reg,
        )
        self.telegram = TelegramWatch(
            Gauge(
                "contactbot_telegram_last_success_timestamp_seconds",
                "When the Bot API last answered a call successfully (Unix time)",
                registry=reg,
            )
        )

    # --- hooks ------------------------------------------------------------------------
    def claimed(self, tier: str, waited_s: float) -> None:
        self.claims.labels(tier).inc()
        self.queue_wait.labels(tier).observe(max(waited_s, 0.0))

    def sla_event(self, tier: str, kind: str, level: str) -> None:
        self.sla_events.labels(tier, kind, level).inc()

    def relay(self, direction: str) -> None:
        self.relayed.labels(direction).inc()
        self.telegram.ok()

    def update(self, kind: str, outcome: str, seconds: float | None = None) -> None:
        self.updates.labels(kind, outcome).inc()
        if seconds is not None:
            self.update_seconds.labels(kind).observe(seconds)

    def push_sent(self, kind: str) -> None:
        self.pushes_sent.labels(kind).inc()
        self.telegram.ok()

    def telegram_error(self, code: int | str | None, source: str) -> None:
        label = "network" if code is None else str(code)
        if label.isdigit() and int(label) >= 500:
            label = "5xx"
        self.telegram_errors.labels(label, source).inc()

    # --- scrape -----------------------------------------------------------------------
    def queue(self, snap: live.QueueSnapshot, now: datetime) -> None:
        self.queue_length.clear()
        self.queue_oldest.clear()
        for t in snap.tiers:
            self.queue_length.labels(t.tier).set(t.waiting)
            self.queue_oldest.labels(t.tier).set(t.oldest_wait(now))
        self.agents_online.set(snap.agents_online)
        self.chats_assigned.set(snap.chats_assigned)


@cache
def metrics() -> Metrics:
    """The process's metrics: made on first use, the same object after."""
    return Metrics()


def metrics_handler(
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    clock: Callable[[], datetime],
    source: Metrics | None = None,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /metrics``: the queue gauges read now, then everything in the text format."""

    async def handle(request: web.Request) -> web.Response:
        m = source or metrics()
        try:
            async with sessions() as s:
                snap = await live.queue_snapshot(s, policy)
        except Exception as exc:  # the database is away: say so, serve the rest
            log.warning("metrics: cannot read the queue: %s", " ".join(str(exc).split())[:200])
            m.database_up.set(0)
        else:
            m.database_up.set(1)
            m.queue(snap, clock())
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(m.registry), headers={"Content-Type": content_type})

    return handle
