"""What supervisors read on top of the agents' texts: ``/stats`` and SLA alerts.

Every text is a function translating at call time (see :mod:`bot.texts`).
"""

from __future__ import annotations

from html import escape

from bot.i18n import _
from bot.texts.agent import conv_label
from routing.store.models import Conversation, Customer
from surveys.status import AgentCsat


def stats(by_tier: dict[str, int], agents_online: int, open_chats: int) -> str:
    lines = ["<b>" + _("Queue") + "</b>"]
    lines += [f"{tier}: {n}" for tier, n in by_tier.items()]
    lines.append(
        "\n"
        + _("Agents online: {online}\nChats with an agent: {chats}").format(
            online=agents_online, chats=open_chats
        )
    )
    return "\n".join(lines)


def deflection(deflected: int, ended: int, handoff: int, live: int) -> str:
    """The /stats line on self-service: sessions that ended without a person."""
    rate = f"{100 * deflected / ended:.0f}%" if ended else "-"
    return _(
        "Self-service: {deflected} of {ended} sessions ended without a person ({rate}); "
        "{handoff} went to a person; {live} in progress"
    ).format(deflected=deflected, ended=ended, rate=rate, handoff=handoff, live=live)


def agent_csat(rows: list[AgentCsat]) -> str:
    if not rows:
        return _("<b>CSAT by agent</b>\nNo answers yet.")
    lines = [_("<b>CSAT by agent</b> (average of 1-5, answers)")]
    lines += [
        _("{name}: {average} ({answers})").format(
            name=r.name.replace("<", "&lt;"), average=f"{r.average:.2f}", answers=r.answers
        )
        for r in rows
    ]
    return "\n".join(lines)


def sla_alert(
    conv: Conversation,
    customer: Customer,
    kind: str,
    level: str,
    elapsed_s: float,
    target_s: float,
    agent_name: str | None,
) -> str:
    label = escape(conv_label(conv, customer))
    what = _("first response") if kind == "first_response" else _("resolution")
    head = (
        _("🚨 SLA breach ({what}): {label}")
        if level == "breach"
        else _("⚠️ SLA warning ({what}): {label}")
    ).format(what=what, label=label)
    body = _("{elapsed} s elapsed of a {target} s target.").format(
        elapsed=int(elapsed_s), target=int(target_s)
    )
    who = (
        _("With {agent}.").format(agent=escape(agent_name))
        if agent_name
        else _("Still waiting in the queue.")
    )
    return f"{head}\n{body}\n{who}"
