"""Agents and complaint cases, on the chat in hand.

The chat is addressed as every agent command addresses one (a reply to one of the chat's
messages, else the focused chat, else the agent's only chat; ``routing.queue.conversations.
resolve_target``):

- ``/complaint CATEGORY [note]``: the chat becomes a complaint case (acknowledged by this
  agent at once; the customer is told the case number);
- ``/remedy KIND [amount] [note]``: a remedy recorded on the case the chat carries;
- ``/resolve [note]``: the case resolved. The chat stays open (closing a chat never resolves
  its case either); the follow-up question is written to the survey outbox.

Bad input gets one line naming what is accepted (the categories, the remedy kinds, an
amount's form). The first agent message after a case was opened or reopened acknowledges
it: every relay of an agent's message (private chat, topic, canned reply) calls
:func:`acknowledge_relayed` in the transaction that stores the message.

The customers' side (filing, the follow-up) is bot/handlers/customer/complaint.py.
"""

from __future__ import annotations

import re

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot import texts
from bot.desk import Desk
from bot.handlers.addressing import addressed
from bot.i18n import for_customer
from routing.care import triggers
from routing.clock import Clock
from routing.complaints import cases, queries, remedies
from routing.policy.complaints import local_text
from routing.policy.root import Policy
from routing.policy.selfservice_parts import normalise_language
from routing.store.care_models import COMPLAINT_UNRESOLVED
from routing.store.models import Agent, Conversation, Customer

router = Router(name="complaint-agents")

# What reads as an attempted amount (a sign, digits, separators) rather than a note's word.
_AMOUNTISH = re.compile(r"^[-+]?[$€£¥]?[-+]?[\d.,]*\d[\d.,]*[$€£¥]?$")


def _category_key(given: str, policy: Policy) -> str | None:
    """The policy's key for what the agent typed (any case)."""
    wanted = given.strip().casefold()
    return next((c.key for c in policy.complaints.categories if c.key.casefold() == wanted), None)


@router.message(Command("complaint"))
async def complaint(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    agent: Agent,
    policy: Policy,
    desk: Desk,
    clock: Clock,
    in_hand: tuple[Conversation, Customer] | None = None,
) -> None:
    """``in_hand``: the chat, when the caller knows it (a customer's forum topic)."""
    p = policy.complaints
    if not p.enabled:
        await message.answer(texts.complaint.complaints_off())
        return
    keys = [c.key for c in p.categories]
    words = (command.args or "").split(maxsplit=1)
    if not words:
        await message.answer(texts.complaint.complaint_usage(keys))
        return
    key = _category_key(words[0], policy)
    if key is None:
        await message.answer(texts.complaint.unknown_category(words[0], keys))
        return
    found = in_hand or await addressed(message, session, agent, texts.complaint.which_chat)
    if found is None:
        return
    conv, customer = found
    note = words[1] if len(words) > 1 else None
    now = clock()
    async with session.begin():
        opened = await cases.open_by_agent(session, conv, agent, key, note, now, policy)
        await triggers.on_complaint(session, opened.complaint, policy, now)
        case = opened.complaint.id
    await message.answer(texts.complaint.opened_for_agent(case, key))
    category = p.category(key)
    if customer.telegram_id is not None and category is not None:
        with for_customer(customer):
            language = normalise_language(customer.language, policy.selfservice.languages)
            label = local_text(category.label, language, policy.selfservice.default_language)
            told = texts.complaint.opened_for_you(case, label)
        await desk.send_quietly(customer.telegram_id, told)


@router.message(Command("remedy"))
async def remedy(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    agent: Agent,
    policy: Policy,
    clock: Clock,
    in_hand: tuple[Conversation, Customer] | None = None,
) -> None:
    kinds = list(policy.complaints.remedies)
    words = (command.args or "").split(maxsplit=2)
    if not words:
        await message.answer(texts.complaint.remedy_usage(kinds))
        return
    try:
        remedies.check_kind(words[0], policy)
    except remedies.RemedyError:
        await message.answer(texts.complaint.unknown_remedy(words[0], kinds))
        return
    if len(words) > 1 and _AMOUNTISH.match(words[1]) and remedies.parse_amount(words[1]) is None:
        await message.answer(texts.complaint.bad_amount(words[1]))
        return
    parsed = remedies.parse_remedy(command.args or "", policy)
    found = in_hand or await addressed(message, session, agent, texts.complaint.which_chat)
    if found is None:
        return
    conv, _customer = found
    async with session.begin():
        case = await queries.case_in_chat(session, conv.id)
        if case is not None:
            await remedies.record_remedy(
                session, case.id, parsed, clock(), policy, agent_id=agent.id
            )
    if case is None:
        await message.answer(texts.complaint.no_case())
        return
    amount = (
        remedies.format_amount(parsed.amount_cents) if parsed.amount_cents is not None else None
    )
    await message.answer(texts.complaint.remedy_recorded(case.id, parsed.kind, amount))


@router.message(Command("resolve"))
async def resolve(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    agent: Agent,
    policy: Policy,
    desk: Desk,
    clock: Clock,
    in_hand: tuple[Conversation, Customer] | None = None,
) -> None:
    found = in_hand or await addressed(message, session, agent, texts.complaint.which_chat)
    if found is None:
        return
    conv, customer = found
    note = (command.args or "").strip() or None
    async with session.begin():
        case = await queries.case_in_chat(session, conv.id)
        resolved = (
            await remedies.resolve(session, case.id, clock(), policy, agent_id=agent.id, note=note)
            if case is not None and case.status in COMPLAINT_UNRESOLVED
            else None
        )
    if case is None:
        await message.answer(texts.complaint.no_case())
        return
    if resolved is None:
        await message.answer(texts.complaint.already_resolved(case.id))
        return
    await message.answer(texts.complaint.resolved_for_agent(case.id))
    if customer.telegram_id is not None:
        with for_customer(customer):
            told = texts.complaint.resolved_for_you(case.id)
        await desk.send_quietly(customer.telegram_id, told)


async def acknowledge_relayed(
    session: AsyncSession, agent_id: int, conversation_id: int, policy: Policy, clock: Clock
) -> list[int]:
    """An agent's message was just stored for ``conversation_id``: it acknowledges every
    case of the chat waiting for its first answer (one indexed query when there is none).
    Call it from any path that relays an agent's message, inside the transaction that
    stores it: a redelivery then finds both done or neither. Returns the case numbers."""
    if not policy.complaints.enabled:
        return []
    return await cases.acknowledge_for_conversation(
        session, conversation_id, agent_id, clock(), policy
    )
