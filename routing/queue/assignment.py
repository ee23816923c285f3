"""Who gets this chat: one pure home for the decision, no I/O.

Given a waiting chat, the customer's people (their account manager, whom they spoke to last),
the online agents with their loads (:class:`~routing.queue.eligibility.AgentSlot`), the policy
and the time, :func:`plan` says

- whom to **reserve** the chat for: a top-tier chat waits ``queue.manager_window_seconds``
  for the customer's account manager alone (online, serving the tier, with room); with no
  manager on record, for the agent who served them within ``queue.sticky_days``;
- whom to **page** (claim mode): the reserved agent alone, else every online agent who may
  be told of it (``eligibility.may_page``), the account manager first; nobody out of the
  tier's business hours for a chat the customer opened (a service-recovery chat, opened by
  us after a bad survey answer, is paged whatever the hours); in offer mode nobody: the
  offer sweep asks one agent at a time;
- how many online agents **serve** the tier (0: tell the customer nobody is there);
- the **position** given and the **ETA** (:func:`eta`).

Every "may this agent take or hear of this chat" question goes to
``routing.queue.eligibility.refusal``. The database side (gathering the inputs, recording
the reservation) is ``routing.queue.offers.plan_new_chat``; ``bot/desk`` carries the plan out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from routing.policy.root import Policy
from routing.queue.conversations import ORIGIN_REQUEST, ORIGIN_VIP
from routing.queue.eligibility import AgentSlot, Chat, hours_open, may_page, refusal, serves
from routing.store.models import Conversation

# Chats a customer opened: they wait for the tier's business hours to page anyone.
CUSTOMER_OPENED = frozenset({ORIGIN_VIP, ORIGIN_REQUEST})


@dataclass(frozen=True)
class Waiting:
    """A waiting chat as the plan sees it."""

    tier: str
    origin: str = ORIGIN_REQUEST
    reserved_agent_id: int | None = None
    reserved_until: datetime | None = None

    @classmethod
    def of(cls, conv: Conversation) -> Waiting:
        return cls(conv.tier, conv.origin, conv.reserved_agent_id, conv.reserved_until)

    @property
    def chat(self) -> Chat:
        return Chat(self.tier, self.reserved_agent_id, self.reserved_until)


@dataclass(frozen=True)
class People:
    """The customer's people, as agent ids."""

    # The CRM names an account manager (whether or not any agent answers to it): then the
    # sticky agent is never looked at.
    has_manager: bool = False
    # That manager, when they are a registered agent (routing.store.managers): only an
    # online one matters here, so a caller may leave an offline one out.
    manager: int | None = None
    # The agent who served them last within ``queue.sticky_days`` (None: nobody, or off).
    last_agent: int | None = None


@dataclass(frozen=True)
class Plan:
    # Hold the chat for this agent until ``reserved_until`` (None: no window).
    reserve_for: int | None
    reserved_until: datetime | None
    # Agents to page, in order (the manager first); empty in offer mode.
    page: tuple[int, ...]
    # The account manager when online: their notice says it is their customer.
    manager: int | None
    # Online agents who serve the chat's tier (full or not).
    serving: int
    position: int
    eta_seconds: float | None
    # Whether the tier is open now (always True for a chat the customer did not open).
    open_now: bool
    offer_mode: bool


def estimate_wait(
    position: int, free_slots: int, total_slots: int, mean_handle_s: float
) -> float | None:
    """Seconds until a chat at ``position`` (1-based) is taken.

    Chats ahead are taken as slots free up: with ``total_slots`` concurrent chats across the
    online agents each lasting ``mean_handle_s``, a slot frees every
    ``mean_handle_s / total_slots`` seconds on average. Free slots take chats at once.
    """
    if total_slots <= 0:
        return None
    behind_free = position - free_slots
    if behind_free <= 0:
        return 0.0
    return behind_free * mean_handle_s / total_slots


def eta(
    position: int, online: Sequence[AgentSlot], tier: str, mean_handle_s: float
) -> float | None:
    """The estimated wait at ``position`` with the online agents who serve ``tier``; None
    when nobody who serves it is online."""
    serving = [s for s in online if serves(s.tiers, tier)]
    total = sum(s.max_chats for s in serving)
    free = sum(max(s.max_chats - s.load, 0) for s in serving)
    return estimate_wait(position, free, total, mean_handle_s)


def open_now(waiting: Waiting, policy: Policy, now: datetime) -> bool:
    """Whether the tier's business hours let agents be paged about this chat now."""
    return waiting.origin not in CUSTOMER_OPENED or hours_open(policy, waiting.tier, now)


def reservation(
    waiting: Waiting,
    online: Sequence[AgentSlot],
    people: People,
    policy: Policy,
    now: datetime,
    *,
    is_open: bool = True,
) -> tuple[int, datetime] | None:
    """Whom a newly queued chat waits for first, and until when; None: everyone at once.

    Only the top tier, only with a window; the account manager when one is on record (and
    nobody else, even when they cannot take it), else the sticky agent. They must be online
    and able to take it now (``eligibility.refusal``)."""
    q = policy.queue
    if q.manager_window_seconds <= 0 or waiting.tier != policy.tier_names[0]:
        return None
    if people.has_manager:
        candidate = people.manager
    else:
        candidate = people.last_agent if q.sticky_days > 0 else None
    slot = next((s for s in online if s.id == candidate), None)
    if slot is None or refusal(slot, waiting.chat, now, open_now=is_open) is not None:
        return None
    return slot.id, now + timedelta(seconds=q.manager_window_seconds)


def page_targets(
    chat: Chat,
    online: Sequence[AgentSlot],
    now: datetime,
    *,
    manager: int | None = None,
    is_open: bool = True,
) -> tuple[int, ...]:
    """The online agents to tell of ``chat`` (``eligibility.may_page``), ``manager`` first,
    then in the order given."""
    ids = [s.id for s in online if may_page(s, chat, now, open_now=is_open)]
    if manager in ids:
        ids.remove(manager)
        ids.insert(0, manager)
    return tuple(ids)


def announce_to(agent: AgentSlot, waiting: Sequence[tuple[int, Chat]], now: datetime) -> list[int]:
    """Of the waiting chats (id, chat), those to show an agent who just came online: the ones
    they may be told of (their tiers, not held for someone else)."""
    return [cid for cid, chat in waiting if may_page(agent, chat, now)]


def plan(
    waiting: Waiting,
    online: Sequence[AgentSlot],
    policy: Policy,
    now: datetime,
    *,
    people: People = People(),
    position: int = 1,
    mean_handle_s: float | None = None,
) -> Plan:
    """Decide what happens to a newly queued chat (see the module's docstring).

    ``online``: every online agent, in a stable order (by id); ``position``: the chat's
    1-based place in the queue; ``mean_handle_s``: the recent mean handle time (default
    ``queue.position.default_handle_seconds``)."""
    q = policy.queue
    is_open = open_now(waiting, policy, now)
    held = reservation(waiting, online, people, policy, now, is_open=is_open)
    chat = waiting.chat if held is None else Chat(waiting.tier, held[0], held[1])
    manager = people.manager if any(s.id == people.manager for s in online) else None
    offer_mode = q.routing_mode == "offer"
    page = () if offer_mode else page_targets(chat, online, now, manager=manager, is_open=is_open)
    handle = q.position.default_handle_seconds if mean_handle_s is None else mean_handle_s
    return Plan(
        reserve_for=held[0] if held else None,
        reserved_until=held[1] if held else None,
        page=page,
        manager=manager,
        serving=sum(1 for s in online if serves(s.tiers, waiting.tier)),
        position=position,
        eta_seconds=eta(position, online, waiting.tier, handle),
        open_now=is_open,
        offer_mode=offer_mode,
    )
