"""Care reminders over Telegram: the care job (cadence and at-risk sweep, then reminders) and
the immediate reminder of a task an event just created (a detractor answer).

A reminder is the task (why it exists, when it is due or how overdue), the customer card
(:func:`bot.texts.card.customer_card`) and the buttons *Start chat*, *Done*, *Snooze*, sent to
each recipient (the assignee; for a pool task the pool, else the supervisors).

How a reminder survives 429s and restarts. The sends go through the rate-limited push
sender (:class:`surveys.push.Sender` over :class:`bot.adapters.survey_transport.AiogramTransport`):
a 429 pauses and retries after ``retry_after``, 5xx and network errors are retried with
backoff for a retry window. The claim is a lease (:mod:`routing.care.reminding`): committed
before the sends, confirmed after them. A reminder nobody received (every send deferred, or
the process died mid-run) is not confirmed, so the sweep after the lease claims and sends it
again; one that reached a recipient, or could never reach anyone (every recipient refused:
blocked the bot, 400), is confirmed and comes back after ``remind_every_hours`` as usual.

Why not the delivery queue's ``note_to_agent``: its rows belong to a conversation (a care
task has none until *Start chat*), are resolved to whoever holds that conversation, and
carry no buttons; the push sender already handles Telegram's limits for messages of this
kind (pushes to people, outside any chat), and the task row itself is the durable record.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiogram import Bot
from aiogram.types import InlineKeyboardMarkup
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import keyboards
from bot.adapters.survey_transport import AiogramTransport
from bot.i18n import for_agents
from bot.texts import card as card_texts
from bot.texts import care as care_texts
from routing.care import card, reminding, triggers
from routing.care.tasks import Reminder
from routing.clock import Clock
from routing.policy.root import Policy
from routing.store.care_models import CARE_STARTED
from surveys.feedback import AnswerResult, AnswerStatus
from surveys.push import Sender
from surveys.push_pacing import SenderConfig
from surveys.push_transport import Outcome, Push, Result

log = logging.getLogger(__name__)

# How long the sweep's sender keeps retrying a reminder through 429s and outages; an event's
# immediate reminder waits less (it runs in the handler of the customer's update).
SWEEP_RETRY_SECONDS = 120.0
NOW_RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class CarePush:
    """What the transport renders for one reminder (``kind`` labels the pushes metric)."""

    text: str
    markup: InlineKeyboardMarkup
    kind: str = "care"


def _render(push: Push) -> tuple[str, InlineKeyboardMarkup]:
    payload: CarePush = push.payload
    return payload.text, payload.markup


def lease_of(policy: Policy) -> timedelta:
    """How long a claimed reminder waits for its confirmation before it is due again:
    longer than a sweep's sends can take, at least two sweeps."""
    return max(
        timedelta(minutes=2 * policy.care.sweep_minutes),
        timedelta(seconds=SWEEP_RETRY_SECONDS + 60),
    )


class CareReminders:
    def __init__(
        self,
        bot: Bot,
        policy: Policy,
        clock: Clock,
        *,
        sweep_retry: float = SWEEP_RETRY_SECONDS,
        now_retry: float = NOW_RETRY_SECONDS,
    ) -> None:
        self.bot = bot
        self.policy = policy
        self.clock = clock
        self.lease = lease_of(policy)
        self.sweep_retry = sweep_retry
        self.now_retry = now_retry

    async def sweep(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        """The care job: create the tasks cadence and at-risk triggers call for, then send
        every due reminder. Returns how many reminders reached someone."""
        now = self.clock()
        async with sessions() as s:
            async with s.begin():
                created = await triggers.sweep(s, self.policy, now)
                due = await reminding.claim_due(s, now, self.policy, self.lease)
            if created:
                log.info("care sweep: %d new task(s)", len(created))
            return await self._send(s, due, now, self.sweep_retry)

    async def remind_new(self, session: AsyncSession, task_id: int) -> int:
        """Remind a task an event just created at once, without waiting for the sweep."""
        now = self.clock()
        async with session.begin():
            reminder = await reminding.claim_new(session, task_id, now, self.policy, self.lease)
        if reminder is None:
            return 0
        return await self._send(session, [reminder], now, self.now_retry)

    async def _send(
        self,
        session: AsyncSession,
        reminders: Sequence[Reminder],
        claimed_at: datetime,
        retry_window: float,
    ) -> int:
        if not reminders:
            return 0
        now = self.clock()
        pushes: list[Push] = []
        async with session.begin():
            for r in reminders:
                data = await card.card(session, r.customer.id)
                assert data is not None  # the task's customer
                with for_agents():
                    text = care_texts.reminder(
                        r.task, r.customer, now, card_texts.customer_card(data)
                    )
                    markup = keyboards.care_task(r.task.id, started=r.task.status == CARE_STARTED)
                for agent in r.recipients:
                    pushes.append(
                        Push(f"{r.task.id}:{agent.id}", agent.telegram_id, CarePush(text, markup))
                    )
        outcomes: dict[int, list[Outcome]] = defaultdict(list)

        async def on_result(result: Result) -> None:
            task_id = int(str(result.push.key).split(":", 1)[0])
            outcomes[task_id].append(result.outcome)
            if result.outcome is not Outcome.SENT:
                log.warning(
                    "care reminder %s to %s: %s (%s)",
                    result.push.key,
                    result.push.chat_id,
                    result.outcome,
                    result.reason,
                )

        config = SenderConfig(retry_window=retry_window, concurrency=4)
        sender = Sender(AiogramTransport(self.bot, _render), config)
        await sender.run(pushes, on_result)
        settled: list[int] = []
        for r in reminders:
            got = outcomes.get(r.task.id, [])
            if not r.recipients:
                log.warning("care task %d: nobody to remind (no pool, no supervisor)", r.task.id)
                settled.append(r.task.id)
            elif Outcome.SENT in got or (got and Outcome.DEFERRED not in got):
                settled.append(r.task.id)
            else:
                log.warning(
                    "care task %d: reminder not delivered; sent again in %s", r.task.id, self.lease
                )
        async with session.begin():
            await reminding.confirm(session, settled, claimed_at, self.policy, self.lease)
        return sum(1 for r in reminders if Outcome.SENT in outcomes.get(r.task.id, []))


async def detractor_task(
    session: AsyncSession,
    result: AnswerResult,
    customer_id: int,
    survey_id: int,
    tier: str,
    policy: Policy,
    now: datetime,
) -> int | None:
    """In the answer's transaction: a care task for a human_first customer whose answer made
    them a detractor (``tier``: the tier they answered as, read before the answer rescored
    them). Its id, or None (not a detractor, not human_first, care off, made before)."""
    if result.status is not AnswerStatus.RECORDED or result.update is None:
        return None
    if not result.update.detractor:
        return None
    task = await triggers.on_detractor(session, customer_id, survey_id, tier, policy, now)
    return None if task is None else task.id
