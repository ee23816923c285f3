"""Canned replies (``[[desk.canned]]``): a reply filled for one customer, in their language,
and the search behind inline mode and "did you mean".

The placeholders' values come from the customer's record and their newest order. A reply
that names a placeholder this customer has no value for (no orders, no manager) is not
filled with a blank: :func:`fill` says which are missing and the agent writes by hand.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from routing.customers.orders import recent_orders
from routing.policy.desk import CannedReply
from routing.policy.root import Policy
from routing.store.managers import manager_of
from routing.store.models import Customer

# Telegram shows at most 50 results of an inline query.
INLINE_LIMIT = 50


@dataclass(frozen=True)
class Filled:
    """A reply for one customer: its text, or the placeholders it lacks values for."""

    text: str | None
    missing: tuple[str, ...] = ()


async def values(session: AsyncSession, customer: Customer) -> dict[str, str | None]:
    """Every placeholder's value for ``customer`` (None: they have none)."""
    manager = await manager_of(session, customer.account_manager)
    newest = await recent_orders(session, customer, 1)
    last_order = (
        f"{newest[0].order_id} ({newest[0].ordered_at.date().isoformat()})" if newest else None
    )
    return {
        "name": customer.name or None,
        "tier": customer.tier,
        "manager": manager.name if manager is not None else (customer.account_manager or None),
        "last_order": last_order,
    }


def fill(
    policy: Policy, reply: CannedReply, customer: Customer, known: dict[str, str | None]
) -> Filled:
    """``reply`` in the customer's language (else the default language), filled."""
    language, default = customer.language, policy.selfservice.default_language
    missing = tuple(p for p in reply.used(language, default) if not known.get(p))
    if missing:
        return Filled(None, missing)
    return Filled(reply.fill(language, default, {k: v or "" for k, v in known.items()}))


def close_matches(policy: Policy, key: str) -> list[str]:
    """Keys that look like ``key`` (a typo, a prefix), best first."""
    keys = [c.key for c in policy.desk.canned]
    low = key.casefold()
    by_low = {k.casefold(): k for k in keys}
    found = [k for k in keys if k.casefold().startswith(low) or low.startswith(k.casefold())]
    for near in difflib.get_close_matches(low, list(by_low), n=3, cutoff=0.5):
        if by_low[near] not in found:
            found.append(by_low[near])
    return found[:3]


def search(replies: Sequence[CannedReply], query: str) -> list[CannedReply]:
    """The replies whose key or text (any language) holds every word of ``query``; all of
    them for an empty query. Keys that start with the query come first."""
    words = query.casefold().split()
    if not words:
        return list(replies)[:INLINE_LIMIT]

    def haystack(c: CannedReply) -> str:
        texts = [c.text] if isinstance(c.text, str) else list(c.text.values())
        return " ".join([c.key, *texts]).casefold()

    found = [c for c in replies if all(w in haystack(c) for w in words)]
    found.sort(key=lambda c: not c.key.casefold().startswith(words[0]))
    return found[:INLINE_LIMIT]
