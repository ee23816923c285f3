"""Survey answers: recorded once, fed into satisfaction and scoring, detractors recovered.

An answer is accepted only while its row is ``sent`` and unexpired: one conditional UPDATE
decides, so a double press (or two presses racing) records one answer and the other is told
politely that nothing changed. The answer updates the customer's satisfaction average and
rescores them (``routing.scoring.satisfaction``). A detractor (``scoring.satisfaction``
``csat_detractor_max`` / ``nps_detractor_max``) gets a service-recovery conversation in the
human queue, boosted by ``surveys.recovery_priority_boost`` ranks, with the answer attached
to its transcript; a VIP (human-first tier) detractor's account manager is paged at once
through :class:`RecoveryPager`, which the bot implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.root import Policy
from routing.queue import claims, conversations
from routing.scoring.model import CSAT
from routing.scoring.satisfaction import SatisfactionUpdate, update_satisfaction
from routing.store.models import QUEUED, SURVEY_COMMENT_ASKED, Conversation, Customer, Survey
from routing.store.update_lookup import awaiting_comment_where
from surveys.outbox_states import ANSWERED, EXPIRED, SENDING, SENT, rowcount

__all__ = [
    "ORIGIN_RECOVERY",
    "AnswerResult",
    "AnswerStatus",
    "Recovery",
    "RecoveryPager",
    "answer",
    "awaiting_comment",
    "comment",
    "notify_recovery",
    "skip_comment",
]

ORIGIN_RECOVERY = "service_recovery"
ASKED = SURVEY_COMMENT_ASKED
GIVEN = "given"
SKIPPED_COMMENT = "skipped"

SCALE = {CSAT: (1, 5)}


def scale(kind: str) -> tuple[int, int]:
    return SCALE.get(kind, (0, 10))


class AnswerStatus(StrEnum):
    RECORDED = "recorded"
    ALREADY_ANSWERED = "already_answered"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # not this customer's, never sent, or out of range


@dataclass(frozen=True)
class Recovery:
    conversation_id: int
    created: bool  # False: the answer was attached to a chat the customer already had open
    vip: bool
    summary: str


@dataclass(frozen=True)
class AnswerResult:
    status: AnswerStatus
    kind: str | None = None
    score: int | None = None
    update: SatisfactionUpdate | None = None
    recovery: Recovery | None = None


def summary_of(survey: Survey, score: int, comment: str | None = None) -> str:
    """How an agent sees a survey answer in the recovery chat (agent-facing, not translated
    here: agents' texts are English throughout, see bot/texts/agent.py)."""
    low, high = scale(survey.kind)
    about = f" about chat #{survey.conversation_id}" if survey.conversation_id else ""
    text = f"Survey answer: {survey.kind.upper()} {score} (scale {low}-{high}){about}"
    return f"{text}\nComment: {comment}" if comment else text


async def answer(
    session: AsyncSession,
    survey_id: int,
    customer_id: int,
    score: int,
    now: datetime,
    policy: Policy,
) -> AnswerResult:
    """Record a button press; call inside a transaction."""
    survey = await session.get(Survey, survey_id)
    if survey is None or survey.customer_id != customer_id:
        return AnswerResult(AnswerStatus.UNKNOWN)
    low, high = scale(survey.kind)
    if not low <= score <= high:
        return AnswerResult(AnswerStatus.UNKNOWN, survey.kind)
    won = (
        await session.execute(
            update(Survey)
            .where(
                Survey.id == survey_id,
                or_(
                    and_(Survey.status == SENT, Survey.expires_at > now),
                    # Pressed before the sweep wrote the send's outcome: the press itself
                    # proves delivery (the sweep fills in the message id after).
                    and_(Survey.status == SENDING, Survey.attempted_at.is_not(None)),
                ),
            )
            .values(
                status=ANSWERED,
                score=score,
                answered_at=now,
                comment_state=ASKED,
                sent_at=func.coalesce(Survey.sent_at, literal(now, Survey.sent_at.type)),
            )
            .returning(Survey.id)
        )
    ).scalar_one_or_none()
    if won is None:
        await session.refresh(survey)
        if survey.status == ANSWERED:
            return AnswerResult(AnswerStatus.ALREADY_ANSWERED, survey.kind, survey.score)
        if survey.status == EXPIRED or (survey.expires_at is not None and survey.expires_at <= now):
            return AnswerResult(AnswerStatus.EXPIRED, survey.kind)
        return AnswerResult(AnswerStatus.UNKNOWN, survey.kind)
    await session.refresh(survey)
    # The tier they answered as: the rescore below may move it, the recovery follows the answer.
    tier = await session.scalar(select(Customer.tier).where(Customer.id == customer_id))
    upd = await update_satisfaction(session, customer_id, survey.kind, score, now, policy)
    recovery = None
    if upd.detractor:
        vip = tier is not None and policy.is_human_first(tier)
        recovery = await _recover(session, survey, score, now, policy, vip)
    return AnswerResult(AnswerStatus.RECORDED, survey.kind, score, upd, recovery)


async def _recover(
    session: AsyncSession, survey: Survey, score: int, now: datetime, policy: Policy, vip: bool
) -> Recovery:
    customer = await session.get(Customer, survey.customer_id, populate_existing=True)
    assert customer is not None
    boost = policy.surveys.recovery_priority_boost
    conv, created = await conversations.open_conversation(
        session, customer, policy, ORIGIN_RECOVERY, now, priority_boost=boost
    )
    if not created and conv.status == QUEUED:
        # Already waiting: it gets the recovery bump too, never a lower priority.
        conv.priority = min(conv.priority, max(policy.rank(customer.tier) - boost, 0))
        # The queue is ordered by the key, not the rank: the bump moves it only through it.
        conv.queue_key = min(conv.queue_key, claims.key_for(policy, conv.priority, conv.queued_at))
    summary = summary_of(survey, score)
    await conversations.add_message(
        session,
        conv,
        sender="bot",
        content_type=conversations.CONTENT_SURVEY,
        text=summary,
        file_id=None,
        chat_id=survey.chat_id or customer.telegram_id or 0,
        message_id=survey.message_id or 0,
        now=now,
    )
    return Recovery(conv.id, created, vip, summary)


class RecoveryPager(Protocol):
    """How the domain reaches people about a detractor (the bot implements it)."""

    async def page_agents(self, conversation_id: int, summary: str) -> int:
        """Page online agents about the queued recovery chat; returns how many."""
        ...

    async def page_manager(
        self, customer_id: int, conversation_id: int, summary: str, *, agents_paged: bool
    ) -> bool:
        """Tell the customer's account manager at once, online or not (``agents_paged``: the
        online agents, the manager first among them, were just paged). False if none."""
        ...


async def notify_recovery(pager: RecoveryPager, result: AnswerResult) -> None:
    """After the answer's transaction committed: page about the recovery chat."""
    rec = result.recovery
    if rec is None or result.update is None:
        return
    if rec.created:
        await pager.page_agents(rec.conversation_id, rec.summary)
    if rec.vip:
        await pager.page_manager(
            result.update.customer_id, rec.conversation_id, rec.summary, agents_paged=rec.created
        )


# ------------------------------------------------------------------------ comments


async def awaiting_comment(
    session: AsyncSession, customer_id: int, now: datetime, policy: Policy
) -> Survey | None:
    """The survey whose follow-up question the customer's next text answers, if any."""
    since = now - timedelta(minutes=policy.surveys.comment_minutes)
    return (
        await session.execute(
            select(Survey)
            .where(*awaiting_comment_where(customer_id, since))
            .order_by(Survey.answered_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


@dataclass(frozen=True)
class CommentResult:
    saved: bool
    # The open recovery chat the comment was also added to (relay it to its agent).
    conversation: Conversation | None = None


async def comment(
    session: AsyncSession,
    survey_id: int,
    customer_id: int,
    text: str,
    *,
    chat_id: int,
    message_id: int,
    now: datetime,
    policy: Policy,
) -> CommentResult:
    won = (
        await session.execute(
            update(Survey)
            .where(
                Survey.id == survey_id,
                Survey.customer_id == customer_id,
                Survey.comment_state == ASKED,
            )
            .values(comment=text[:4000], comment_state=GIVEN)
            .returning(Survey.id)
        )
    ).scalar_one_or_none()
    if won is None:
        return CommentResult(False)
    conv = await conversations.open_for_customer(session, customer_id)
    if conv is None or conv.origin != ORIGIN_RECOVERY:
        return CommentResult(True)
    # The detractor's own words go into the recovery chat's transcript (and to its agent).
    await conversations.add_message(
        session,
        conv,
        sender="customer",
        content_type="text",
        text=text,
        file_id=None,
        chat_id=chat_id,
        message_id=message_id,
        now=now,
    )
    return CommentResult(True, conv)


async def skip_comment(session: AsyncSession, survey_id: int, customer_id: int) -> bool:
    return bool(
        rowcount(
            await session.execute(
                update(Survey)
                .where(
                    Survey.id == survey_id,
                    Survey.customer_id == customer_id,
                    Survey.comment_state == ASKED,
                )
                .values(comment_state=SKIPPED_COMMENT)
            )
        )
    )
