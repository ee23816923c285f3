"""Every user-facing string of the bot, by audience, in one convention.

The convention: **every text is a function** that translates with ``_()`` when it is called,
so it comes out in the language of the moment (the current update's locale, or the one a
``with speaking(...)`` / ``for_customer(...)`` / ``for_agents()`` block chose), then fills its
named placeholders. A text without parameters is a function too (``texts.agent.now_online()``):
one shape for all of them, checked by mypy (a misspelt name is an error, not a lazy lookup
that fails at run time), found by the extractor (``tools/i18n.py``) as plain ``_("...")``
calls, and never translated too early (at import time, outside any update).

The modules, by who reads the text:

- :mod:`bot.texts.customer`: identification, self-service, the queue as customers see it,
  the command menu, flood control.
- :mod:`bot.texts.agent`: the desk (notifications, claims, offers, transfers, the chat
  list), undelivered-message notes, pages to account managers.
- :mod:`bot.texts.supervisor`: ``/stats`` and SLA alerts.
- :mod:`bot.texts.survey`: the survey questions and replies customers see.
- :mod:`bot.texts.card`: the customer card agents read (hand-over, care reminder, topic).
- :mod:`bot.texts.desk`: internal notes, canned replies, the labelled transcript of a hand-over.
- :mod:`bot.texts.complaint`: complaint cases: filing one, handling it, its SLA alerts.

Use them as ``from bot import texts`` and ``texts.customer.human_button()``.
"""

from __future__ import annotations

from bot.texts import agent, card, complaint, customer, desk, supervisor, survey, topics

__all__ = ["agent", "card", "complaint", "customer", "desk", "supervisor", "survey", "topics"]
