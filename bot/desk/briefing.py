"""What an agent is given when a chat becomes theirs (a claim, an accepted offer, a transfer).

The hand-over's first message is the **customer card** (``bot.texts.card``) with the
self-service path and question that led here (in topics mode the customer's topic opens
the chat with it, so the hand-over does not repeat it); then:

- a chat nobody held before: what the transcript holds that is not on its way already (a
  survey answer, customer messages delivered before), and "The customer's messages follow."
  only when something does;
- a chat someone held (a transfer, or requeued when its agent left): the **labelled
  transcript**, who said what and when ("Customer 10:02: ...", "Agent Bob 10:03: ...",
  internal notes marked), texts gathered into a few messages and each media message copied
  after its label, in order; in topics mode the customer's topic already holds it, so the
  hand-over says so instead.

Everything here is read in the hand-over's transaction and queued by
``routing.delivery.enqueue.hand_over`` (the delivery queue sends it, then the messages that
waited). Times are in ``[desk] timezone``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import texts
from bot.i18n import current_locale
from routing.care.card import card as customer_card
from routing.delivery import enqueue
from routing.delivery.enqueue import Briefing
from routing.policy.root import Policy
from routing.queue import conversations
from routing.queue import topics as topic_records
from routing.selfservice import deflection
from routing.store.models import Agent, Conversation, Customer, Message

# A transcript message holds at most this many characters (Telegram's limit is 4096).
CHUNK = 3500
# Media messages of one sender this close together are one album: one label, one copy.
ALBUM_SECONDS = 2.0
HEADER = enqueue.LINK_HEADER


async def hand_over_items(
    session: AsyncSession,
    policy: Policy,
    conv: Conversation,
    customer: Customer,
    by: Agent | None,
    waiting: set[tuple[int, int]],
) -> list[Briefing]:
    """The hand-over's briefing; ``waiting``: the (chat, message) pairs already queued for
    whoever holds the chat (they follow the briefing as they are)."""
    rows = await conversations.transcript(session, conv.id)
    card = await card_text(session, policy, conv, customer)
    if policy.desk.topics:
        topic = await topic_records.get(session, customer.id)
        if topic is not None and topic.conversation_id == conv.id:
            card = ""  # the customer's topic opens this chat with it: not twice
    held = conv.transferred_by is not None or any(m.sender in ("agent", "note") for m in rows)
    backlog = [m for m in rows if (m.chat_id, m.message_id) not in waiting]
    if held:
        out = [Briefing(text=texts.agent.briefing(conv, customer, card, follows=False),
                        link_kind=HEADER)]  # fmt: skip
        if policy.desk.topics:
            # The customer's topic already holds the conversation: no second copy of it.
            note = (
                texts.desk.transferred_in_topic(by.name, conv.transfer_note)
                if by is not None
                else texts.desk.history_in_topic()
            )
            return [*out, Briefing(text=note, link_kind=HEADER)]
        if by is not None:
            note = texts.agent.transfer_note(by.name, conv.transfer_note)
        else:
            note = texts.agent.history_follows()
        out.append(Briefing(text=note, link_kind=HEADER))
        names = await agent_names(session, {m.agent_id for m in backlog if m.agent_id})
        zone = ZoneInfo(policy.desk.timezone)
        today = (conv.assigned_at or datetime.now(zone)).astimezone(zone).date()
        return out + labelled(backlog, names, zone, today)
    rest: list[Briefing] = []
    for m in backlog:
        if m.content_type == conversations.CONTENT_SURVEY:
            # The answer that opened a service-recovery chat (or a complaint's summary): its
            # text, since copying would bring the customer's survey question instead.
            rest.append(Briefing(text=escape(m.text or ""), link_kind=HEADER))
        elif m.sender == "customer":
            rest.append(Briefing(from_chat_id=m.chat_id, message_ids=(m.message_id,)))
    # Only the customer's own messages "follow" (a survey answer or a case is a note).
    follows = bool(waiting) or any(item.text is None for item in rest)
    head = texts.agent.briefing(conv, customer, card, follows=follows)
    return [Briefing(text=head, link_kind=HEADER), *rest]


async def card_text(
    session: AsyncSession, policy: Policy, conv: Conversation, customer: Customer
) -> str:
    """The customer card, with the self-service path and question that ended in this chat."""
    data = await customer_card(session, customer.id)
    ss = policy.selfservice
    within = timedelta(minutes=ss.session_minutes)
    handoff = await deflection.handoff(session, customer.id, conv.queued_at, within)
    path = " › ".join(path_label(policy, n) for n in handoff.path) if handoff else None
    question = handoff.question if handoff else None
    if data is None:  # pragma: no cover - the chat's customer row always exists
        return texts.agent.conv_label(conv, customer)
    return texts.card.customer_card(data, path=path or None, question=question)


def path_label(policy: Policy, node: str) -> str:
    """A self-service step as the customer saw it, in the agent's language."""
    if node == deflection.SEARCH:
        return texts.agent.search_step()
    ss, locale = policy.selfservice, current_locale()
    if node in ss.menus:
        return ss.text(ss.menus[node].title, locale)
    if node in ss.actions:
        return ss.text(ss.actions[node].title, locale)
    entry = ss.entry(node)
    return ss.text(entry.question, locale) if entry is not None else node


async def agent_names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await session.execute(select(Agent.id, Agent.name).where(Agent.id.in_(ids)))
    return {int(i): str(n) for i, n in rows.all()}


def when(at: datetime, zone: ZoneInfo, today: date | None = None) -> str:
    """A transcript time in ``zone``: the time of day on ``today``, else date and time."""
    local = at.astimezone(zone)
    return local.strftime("%H:%M") if local.date() == today else local.strftime("%Y-%m-%d %H:%M")


def _albums(rows: Sequence[Message]) -> list[list[Message]]:
    """Consecutive media messages of one chat sent together (an album) as one group."""
    groups: list[list[Message]] = []
    for m in rows:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and is_media(m)
            and is_media(last)
            and last.chat_id == m.chat_id
            and last.content_type == m.content_type
            and (m.created_at - last.created_at).total_seconds() <= ALBUM_SECONDS
        ):
            groups[-1].append(m)
        else:
            groups.append([m])
    return groups


def is_media(m: Message) -> bool:
    return (
        m.sender in ("customer", "agent")
        and not _is_note(m)
        and m.content_type not in ("text", conversations.CONTENT_SURVEY)
    )


def _is_note(m: Message) -> bool:
    # (sender "note": how topics mode first stored notes; conversations.add_note now.)
    return m.content_type == conversations.CONTENT_NOTE or m.sender == "note"


def line_of(m: Message, body: str, names: dict[int, str], at: str) -> str:
    """One transcript entry as HTML: who (the customer, an agent by name, an internal note,
    the bot) and when (``at``), then ``body`` (HTML already)."""
    name = names.get(m.agent_id, texts.agent.someone()) if m.agent_id is not None else ""
    if _is_note(m):
        return texts.desk.transcript_note(name, at, body)
    if m.sender == "customer":
        return texts.desk.transcript_customer(at, body)
    if m.sender == "agent":
        return texts.desk.transcript_agent(name, at, body)
    return texts.desk.transcript_bot(at, body)


def labelled(
    rows: Sequence[Message], names: dict[int, str], zone: ZoneInfo, today: date
) -> list[Briefing]:
    """Who said what and when: text lines gathered into messages of at most ``CHUNK``
    characters; each media message (an album together) copied right after its label."""
    out: list[Briefing] = []
    lines: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal lines, size
        if lines:
            out.append(Briefing(text="\n".join(lines), link_kind=HEADER))
        lines, size = [], 0

    def add(line: str, plain: int) -> None:
        nonlocal size
        if lines and size + plain > CHUNK:
            flush()
        lines.append(line)
        size += plain + 1

    for group in _albums(rows):
        m = group[0]
        at = when(m.created_at, zone, today)
        if is_media(m):
            caption = next((g.text for g in group if g.text), None)
            body = texts.desk.transcript_media(m.content_type, len(group), caption)
            add(line_of(m, body, names, at), len(caption or "") + 40)
            flush()
            out.append(
                Briefing(from_chat_id=m.chat_id, message_ids=tuple(g.message_id for g in group))
            )
            continue
        text = m.text or ""
        # A long message is split so that no transcript message passes Telegram's limit.
        parts = [text[i : i + CHUNK - 100] for i in range(0, len(text), CHUNK - 100)] or [""]
        for part in parts:
            add(line_of(m, escape(part), names, at), len(part) + 40)
    flush()
    return out
