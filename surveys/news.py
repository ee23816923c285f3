"""Announcement rows in the survey outbox: what sets a ``news`` row apart when it is claimed.

A tier announcement (:mod:`surveys.broadcasts`) is one row per recipient in ``surveys``,
kind :data:`NEWS`, ``campaign`` = the broadcast's key. The outbox claims, stamps, sends and
records them exactly like surveys (:mod:`surveys.outbox`), with these differences, which
:mod:`surveys.outbox_claims`, :mod:`surveys.outbox_schedule` and :mod:`surveys.outbox` ask
this module about:

* the opt-out is ``customers.news_opt_out`` (``/stop_news``), not the survey opt-out;
* the frequency cap is the announcements' own (``[care.announcements]
  frequency_cap_days``; :func:`surveys.outbox_schedule.capped_customers` with
  ``news=True``), and news rows do not count towards the surveys' cap;
* the payload is a :class:`NewsPush` carrying the text in the customer's language
  (:func:`pick_text`), which the bot sends as plain text without buttons;
* a sent announcement asks nothing, so it never expires into ``expired`` ("not answered").

Quiet hours, the 403 handling, the stamp before the call and reconciliation after a crash
are the outbox's, unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.policy.selfservice_parts import normalise_language
from routing.store.broadcast_models import Broadcast

__all__ = ["NEWS", "R_NO_BROADCAST", "NewsPush", "Texts", "pick_text", "texts_of"]

NEWS = "news"  # surveys.kind of an announcement row
# A news row whose broadcast is not in ``broadcasts`` (never happens unless a row is written
# by hand): skipped rather than left to fail every sweep.
R_NO_BROADCAST = "announcement not found"


@dataclass(frozen=True)
class NewsPush:
    """What the bot needs to send one announcement (``Push.payload``). The first three
    fields are the ones the outbox's journal reads of any payload."""

    survey_id: int
    kind: str
    customer_id: int
    language: str  # the language of ``text``
    text: str


@dataclass(frozen=True)
class Texts:
    """A broadcast's texts: language -> text, and the language used when the customer's
    is not among them."""

    by_language: Mapping[str, str]
    default: str

    def pick(self, language: str | None) -> tuple[str, str]:
        return pick_text(self.by_language, language, self.default)

    @classmethod
    def of(cls, broadcast: Broadcast) -> Texts:
        return cls(json.loads(broadcast.texts), broadcast.default_language)


def pick_text(texts: Mapping[str, str], language: str | None, default: str) -> tuple[str, str]:
    """(language, text) for a customer whose language is ``language``: their own when the
    broadcast has it (``zh-CN`` finds ``zh_Hans``, ``en-GB`` finds ``en``), else the
    default language's."""
    chosen = normalise_language(language, texts) if language else None
    lang = chosen if chosen is not None else default
    return lang, texts[lang]


async def texts_of(session: AsyncSession, keys: Iterable[str]) -> dict[str, Texts]:
    """The texts of the broadcasts ``keys`` (those that exist)."""
    wanted = set(keys)
    if not wanted:
        return {}
    rows = await session.execute(select(Broadcast).where(Broadcast.key.in_(wanted)))
    return {b.key: Texts.of(b) for b in rows.scalars()}
