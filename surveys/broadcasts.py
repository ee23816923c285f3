"""Tier announcements (``contactbot broadcast``): one text, per language, to every customer
of some tiers, through the durable survey outbox and its rate-limited sender.

A broadcast is a row in ``broadcasts`` (its key, tiers, texts by language, fire time) and
one outbox row per recipient in ``surveys`` (kind ``news``, ``campaign`` = the key). It is
made like an NPS campaign run (:mod:`surveys.campaigns`): the ``broadcasts`` row is written
first, the outbox rows in keyset batches with ``ON CONFLICT DO NOTHING`` on the unique
``(campaign, customer_id)``, and ``finished_at`` last. A crash part-way (of the command or
of the bot) leaves an unfinished broadcast; running the same command again, or the bot's
survey tick :data:`RESUME_AFTER` later, writes only the missing rows. Nobody gets two rows
of one broadcast, so nobody gets it twice.

Who gets a row: every non-guest customer of the tiers with a Telegram chat. Rows for
customers who opted out (``/stop_news``) or blocked the bot are written ``skipped`` with the
reason at once; guests and customers without a Telegram chat get no row (a guest's rows
move to the customer they turn out to be, where a second row of the same broadcast would
break the unique key) and are counted on the broadcast instead (``guests``, ``no_chat``).

Sending is the outbox's (:mod:`surveys.outbox`; what differs for news rows is in
:mod:`surveys.news`): due at the fire time, claimed in batches, checked again at send time
(opt-out, unreachable, the announcement cap ``[care.announcements] frequency_cap_days``),
deferred by quiet hours, stamped before the Telegram call, recorded after it; a row still
unsent ``[care.announcements] expiry_hours`` after the fire time is not sent any more. The
text is the customer's language's when the broadcast has it, else the default language's
(the first of ``[selfservice] languages``).

After a SIGKILL of the bot mid-run, rows never handed to Telegram are sent by the next
sweep; the few whose call was in flight are marked failed ("outcome unknown"), never sent
again: at most once, as for surveys (:mod:`surveys.outbox`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.policy.root import Policy
from routing.policy.selfservice_parts import normalise_language
from routing.store.broadcast_models import Broadcast
from routing.store.models import Customer, Survey
from surveys.campaigns import insert_once
from surveys.news import NEWS
from surveys.outbox_states import (
    R_OPTED_OUT,
    R_UNREACHABLE,
    SCHEDULED,
    SKIPPED,
)

__all__ = [
    "BATCH",
    "MAX_CHARS",
    "RESUME_AFTER",
    "BroadcastError",
    "Created",
    "Draft",
    "check_texts",
    "check_tiers",
    "create",
    "finish",
    "in_tiers",
    "reachable",
    "resume_unfinished",
]

BATCH = 1000
# Telegram's limit for a message's text (after entities are parsed), in UTF-16 code units.
MAX_CHARS = 4096
# The bot's tick finishes a broadcast whose writing stopped (the command died) this long after
# it was created; before that, the command that creates it is presumably still writing.
RESUME_AFTER = timedelta(minutes=10)
# A command repeated without --at within this long is taken for an accident (see create()).
REPEAT_WINDOW = timedelta(hours=24)


class BroadcastError(ValueError):
    """A broadcast that cannot be made as asked; the message is one line for the operator."""


# ------------------------------------------------------------------------ the draft


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def check_tiers(names: Iterable[str], policy: Policy) -> tuple[str, ...]:
    """The named tiers in the policy's order; unknown names are an error."""
    wanted = {n.strip() for n in names if n.strip()}
    if not wanted:
        raise BroadcastError("no tier given (e.g. --tier VIP,A)")
    known = policy.tier_names
    unknown = sorted(wanted - set(known))
    if unknown:
        raise BroadcastError(
            f"unknown tier {', '.join(map(repr, unknown))} (the policy's tiers: {', '.join(known)})"
        )
    return tuple(t for t in known if t in wanted)


def check_texts(texts: Mapping[str, str], policy: Policy) -> dict[str, str]:
    """Texts by language, checked: each language one of ``[selfservice] languages`` (tags
    like ``zh-CN`` or ``zh`` are taken as ``zh_Hans``), the default language (the first)
    present, no text empty or over Telegram's 4096 characters. Surrounding blank lines and
    spaces are dropped."""
    languages = policy.selfservice.languages
    default = languages[0]
    out: dict[str, str] = {}
    for tag, text in texts.items():
        lang = normalise_language(tag, languages)
        if lang is None:
            raise BroadcastError(
                f"language {tag!r} is not one the bot speaks ([selfservice] languages: "
                f"{', '.join(languages)})"
            )
        if lang in out:
            raise BroadcastError(f"two texts for {lang}")
        body = text.strip()
        if not body:
            raise BroadcastError(f"the {lang} text is empty")
        n = utf16_len(body)
        if n > MAX_CHARS:
            raise BroadcastError(
                f"the {lang} text has {n} characters; Telegram allows {MAX_CHARS} per message"
            )
        out[lang] = body
    if default not in out:
        raise BroadcastError(f"no text in the default language {default} (the first of "
                             "[selfservice] languages)")  # fmt: skip
    # The default language first, then the others in the policy's order.
    return {lang: out[lang] for lang in languages if lang in out}


@dataclass(frozen=True)
class Draft:
    """A broadcast as asked for: checked tiers and texts, and when it goes out.
    ``at_given``: the time was chosen (``--at``), not "now"."""

    tiers: tuple[str, ...]
    texts: Mapping[str, str]
    default_language: str
    fire_at: datetime
    at_given: bool = True

    @property
    def digest(self) -> str:
        blob = json.dumps([list(self.tiers), dict(self.texts)], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def key(self) -> str:
        return f"news:{self.fire_at.astimezone(UTC):%Y%m%dT%H%MZ}:{self.digest[:8]}"

    @classmethod
    def make(
        cls,
        policy: Policy,
        tiers: Iterable[str],
        texts: Mapping[str, str],
        fire_at: datetime,
        *,
        at_given: bool = True,
    ) -> Draft:
        if fire_at.tzinfo is None:
            raise BroadcastError("the time needs a zone, e.g. 2026-12-10T09:00+01:00 or ...Z")
        checked = check_texts(texts, policy)
        return cls(
            check_tiers(tiers, policy),
            checked,
            policy.selfservice.languages[0],
            fire_at.astimezone(UTC),
            at_given,
        )


# ------------------------------------------------------------------------ who is in it


def in_tiers(tiers: Sequence[str]) -> Any:
    return Customer.tier.in_(tiers)


def reachable() -> Any:
    return and_(Customer.is_guest.is_(False), Customer.telegram_id.is_not(None))


# ------------------------------------------------------------------------ creating it


@dataclass(frozen=True)
class Created:
    key: str
    fire_at: datetime
    rows: int  # the broadcast's outbox rows (recipients, and those skipped at once)
    written: int  # rows this call wrote (0 when it had them all)
    resumed: bool  # the broadcast existed unfinished: this call finished it
    existed: bool  # the broadcast existed finished: nothing was written


async def _rows(session: AsyncSession, key: str) -> int:
    q = select(func.count()).select_from(Survey).where(Survey.campaign == key)
    return int(await session.scalar(q) or 0)


async def create(
    sessions: async_sessionmaker[AsyncSession],
    draft: Draft,
    policy: Policy,
    now: datetime,
    *,
    created_by: str | None = None,
) -> Created:
    """Record the broadcast, then write its outbox rows; idempotent.

    The same draft again (same key) finishes what a crash left unfinished, or writes nothing.
    A draft without a chosen time (``at_given`` False) that matches an unfinished broadcast
    by tiers and texts finishes that one; one that matches a broadcast finished within the
    last 24 hours is refused: the same command run twice is taken for an accident (give
    ``--at`` to send the same text again)."""
    key = draft.key
    async with sessions() as s, s.begin():
        found = await s.get(Broadcast, key)
        if found is None and not draft.at_given:
            same = (
                await s.execute(
                    select(Broadcast)
                    .where(Broadcast.digest == draft.digest)
                    .order_by(Broadcast.created_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if same is not None and same.finished_at is None:
                found = same
            elif same is not None and same.created_at >= now - REPEAT_WINDOW:
                raise BroadcastError(
                    f"the same announcement to {same.tiers} was created as {same.key} at "
                    f"{same.created_at:%Y-%m-%d %H:%M} UTC; to send it again, give --at"
                )
        if found is None:
            s.add(
                Broadcast(
                    key=key,
                    tiers=",".join(draft.tiers),
                    texts=json.dumps(dict(draft.texts), ensure_ascii=False),
                    default_language=draft.default_language,
                    digest=draft.digest,
                    fire_at=draft.fire_at,
                    expires_at=draft.fire_at + expiry(policy),
                    created_at=now,
                    created_by=created_by[:64] if created_by else None,
                )
            )
            resumed = existed = False
        else:
            key = found.key
            resumed, existed = found.finished_at is None, found.finished_at is not None
    if existed:
        async with sessions() as s:
            b = await s.get(Broadcast, key)
            assert b is not None
            return Created(key, b.fire_at, b.recipients, 0, False, True)
    return await finish(sessions, key, now, resumed=resumed)


def expiry(policy: Policy) -> timedelta:
    return timedelta(hours=policy.care.announcements.expiry_hours)


async def finish(
    sessions: async_sessionmaker[AsyncSession],
    key: str,
    now: datetime,
    *,
    resumed: bool = True,
) -> Created:
    """Write the outbox rows a broadcast lacks, then its figures and ``finished_at``."""
    async with sessions() as s:
        b = await s.get(Broadcast, key)
        if b is None:
            raise BroadcastError(f"no broadcast {key!r}")
        tiers = b.tiers.split(",")
        fire_at, expires_at = b.fire_at, b.expires_at
        before = await _rows(s, key)
    after = 0
    while True:
        async with sessions() as s, s.begin():
            # Keyset batches by id: memory stays flat however large the tiers.
            batch = (
                await s.execute(
                    select(Customer.id, Customer.news_opt_out, Customer.unreachable_at)
                    .where(Customer.id > after, in_tiers(tiers), reachable())
                    .order_by(Customer.id)
                    .limit(BATCH)
                )
            ).all()
            if not batch:
                break
            after = batch[-1].id
            rows = []
            for cid, opted_out, unreachable_at in batch:
                reason = R_OPTED_OUT if opted_out else R_UNREACHABLE if unreachable_at else None
                rows.append(
                    {
                        "kind": NEWS,
                        "customer_id": cid,
                        "campaign": key,
                        "status": SCHEDULED if reason is None else SKIPPED,
                        "reason": reason,
                        "due_at": fire_at,
                        "created_at": now,
                        "expires_at": expires_at,
                    }
                )
            await s.execute(insert_once(s), rows)
    async with sessions() as s, s.begin():
        total = await _rows(s, key)
        c = Customer
        guests, no_chat = (
            await s.execute(
                select(
                    func.count().filter(c.is_guest.is_(True)),
                    func.count().filter(c.is_guest.is_(False), c.telegram_id.is_(None)),
                ).where(in_tiers(tiers))
            )
        ).one()
        await s.execute(
            update(Broadcast)
            .where(Broadcast.key == key)
            .values(finished_at=now, recipients=total, guests=int(guests), no_chat=int(no_chat))
        )
    return Created(key, fire_at, total, total - before, resumed, False)


async def resume_unfinished(
    sessions: async_sessionmaker[AsyncSession], now: datetime
) -> list[Created]:
    """Finish every broadcast whose writing stopped :data:`RESUME_AFTER` ago or more (the
    bot's survey tick calls this; the command that creates one finishes it itself)."""
    async with sessions() as s:
        keys = list(
            (
                await s.execute(
                    select(Broadcast.key).where(
                        Broadcast.finished_at.is_(None), Broadcast.created_at <= now - RESUME_AFTER
                    )
                )
            ).scalars()
        )
    return [await finish(sessions, key, now) for key in keys]
