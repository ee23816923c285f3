"""The follow-up of a resolved complaint, on the survey side: "was this resolved to your
satisfaction?" (yes / no), then a 1-5 rating of the handling.

The question is a row of the survey outbox, kind :data:`KIND`, written when the case was
resolved (``routing.complaints.follow_up.schedule``). The outbox claims and sends it like any
survey, so opt-out and quiet hours apply; the frequency cap does not hold it back (see
:data:`CAP_EXEMPT`). What sets it apart:

* its payload is a :class:`FollowUpPush` carrying the question in the customer's language
  (the policy's ``[complaints.follow_up]`` texts, case number and category filled in):
  :func:`with_questions` swaps it in for the claimed rows;
* an answer is claimed on the survey row first (one conditional UPDATE, as for CSAT, so a
  double press counts once), and only then handed to the case (:func:`answer` ->
  ``follow_up.record_follow_up``; :func:`rate` -> ``follow_up.record_follow_up_score``). A
  "no" reopens the case and queues it; the caller pages about it after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.complaints import cases, follow_up
from routing.policy.root import Policy
from routing.policy.selfservice_parts import normalise_language
from routing.store.care_models import Complaint
from routing.store.models import Survey
from surveys.feedback import AnswerStatus
from surveys.outbox_states import ANSWERED, EXPIRED, SENDING, SENT
from surveys.push_transport import Push

__all__ = [
    "CAP_EXEMPT",
    "KIND",
    "FollowUpAnswer",
    "FollowUpPush",
    "answer",
    "rate",
    "with_questions",
]

KIND = follow_up.KIND

# Kinds the surveys' frequency cap never holds back. A complaint's follow-up is the case's
# own last step (a "no" reopens it), asked once per resolution of a case the customer
# raised: a CSAT of the chat that carried the case, or an NPS campaign, sent in the last
# ``frequency_cap_days`` must not swallow it. It still counts as a survey sent, so it holds
# back the next CSAT or NPS as any survey does; quiet hours and the opt-out apply to it.
CAP_EXEMPT = frozenset({KIND})


@dataclass(frozen=True)
class FollowUpPush:
    """What the bot needs to send one follow-up (``Push.payload``). The first three fields
    are the ones the outbox's journal reads of any payload."""

    survey_id: int
    kind: str
    customer_id: int
    language: str | None  # the customer's, for the buttons
    text: str  # the question (policy text, not escaped)


def language_of(language: str | None, policy: Policy) -> str | None:
    """The policy language of a customer's language tag (zh-CN -> zh_Hans), if any."""
    return normalise_language(language, policy.selfservice.languages)


async def with_questions(session: AsyncSession, policy: Policy, pushes: list[Push]) -> list[Push]:
    """``pushes`` with every follow-up's payload a :class:`FollowUpPush` (one query for
    their cases, none when there is no follow-up among them)."""
    ids = [p.payload.survey_id for p in pushes if getattr(p.payload, "kind", None) == KIND]
    if not ids:
        return pushes
    rows = (
        await session.execute(
            select(Survey.id, Complaint)
            .join(Complaint, Complaint.id == Survey.complaint_id)
            .where(Survey.id.in_(ids))
        )
    ).all()
    cases_by_survey = {sid: complaint for sid, complaint in rows}
    out: list[Push] = []
    for p in pushes:
        complaint = cases_by_survey.get(getattr(p.payload, "survey_id", -1))
        if getattr(p.payload, "kind", None) != KIND or complaint is None:
            out.append(p)
            continue
        language = p.payload.language
        question = follow_up.texts(complaint, language_of(language, policy), policy)["question"]
        payload = FollowUpPush(p.payload.survey_id, KIND, p.payload.customer_id, language, question)
        out.append(replace(p, payload=payload))
    return out


@dataclass(frozen=True)
class FollowUpAnswer:
    status: AnswerStatus
    complaint_id: int | None = None
    # The follow-up's texts in the customer's language (question, rating, thanks, reopened).
    texts: dict[str, str] | None = None
    # What the case made of a yes / no (None for a rating).
    outcome: follow_up.FollowUp | None = None


async def _own(session: AsyncSession, survey_id: int, customer_id: int) -> Survey | None:
    survey = await session.get(Survey, survey_id, populate_existing=True)
    if (
        survey is None
        or survey.customer_id != customer_id
        or survey.kind != KIND
        or survey.complaint_id is None
    ):
        return None
    return survey


async def _texts(
    session: AsyncSession, complaint_id: int, language: str | None, policy: Policy
) -> dict[str, str]:
    complaint = await cases.get(session, complaint_id)
    return follow_up.texts(complaint, language_of(language, policy), policy)


async def answer(
    session: AsyncSession,
    survey_id: int,
    customer_id: int,
    satisfied: bool,
    now: datetime,
    policy: Policy,
    language: str | None = None,
) -> FollowUpAnswer:
    """The customer's yes / no. Call inside a transaction."""
    survey = await _own(session, survey_id, customer_id)
    if survey is None or survey.complaint_id is None:
        return FollowUpAnswer(AnswerStatus.UNKNOWN)
    won = (
        await session.execute(
            update(Survey)
            .where(
                Survey.id == survey_id,
                or_(
                    and_(Survey.status == SENT, Survey.expires_at > now),
                    # Pressed before the sweep wrote the send's outcome (see feedback.answer).
                    and_(Survey.status == SENDING, Survey.attempted_at.is_not(None)),
                ),
            )
            .values(
                status=ANSWERED,
                answered_at=now,
                sent_at=func.coalesce(Survey.sent_at, literal(now, Survey.sent_at.type)),
            )
            .returning(Survey.id)
        )
    ).scalar_one_or_none()
    if won is None:
        await session.refresh(survey)
        if survey.status == ANSWERED:
            return FollowUpAnswer(AnswerStatus.ALREADY_ANSWERED, survey.complaint_id)
        if survey.status == EXPIRED or (survey.expires_at is not None and survey.expires_at <= now):
            return FollowUpAnswer(AnswerStatus.EXPIRED, survey.complaint_id)
        return FollowUpAnswer(AnswerStatus.UNKNOWN, survey.complaint_id)
    outcome = await follow_up.record_follow_up(session, survey.complaint_id, satisfied, now, policy)
    texts = await _texts(session, survey.complaint_id, language, policy)
    return FollowUpAnswer(AnswerStatus.RECORDED, survey.complaint_id, texts, outcome)


async def rate(
    session: AsyncSession,
    survey_id: int,
    customer_id: int,
    score: int,
    now: datetime,
    policy: Policy,
    language: str | None = None,
) -> FollowUpAnswer:
    """The customer's 1-5 rating, after their yes / no on the same follow-up. Counts once,
    and only for the case's latest answer (a rating button of an older follow-up of a case
    since reopened and resolved again does not rate the new one). Call inside a transaction.
    """
    low, high = follow_up.RATING
    survey = await _own(session, survey_id, customer_id)
    if survey is None or survey.complaint_id is None or not low <= score <= high:
        return FollowUpAnswer(AnswerStatus.UNKNOWN)
    complaint = await cases.get(session, survey.complaint_id)
    latest = (
        survey.status == ANSWERED
        and survey.answered_at is not None
        and complaint.followed_up_at == survey.answered_at
    )
    won = None
    if latest:
        won = (
            await session.execute(
                update(Survey)
                .where(Survey.id == survey_id, Survey.status == ANSWERED, Survey.score.is_(None))
                .values(score=score)
                .returning(Survey.id)
            )
        ).scalar_one_or_none()
    if won is None:
        status = (
            AnswerStatus.ALREADY_ANSWERED if survey.status == ANSWERED else AnswerStatus.UNKNOWN
        )
        return FollowUpAnswer(status, survey.complaint_id)
    await follow_up.record_follow_up_score(session, survey.complaint_id, score, now)
    texts = await _texts(session, survey.complaint_id, language, policy)
    return FollowUpAnswer(AnswerStatus.RECORDED, survey.complaint_id, texts)
