"""User-facing strings of the queue (issue 5): capacity, offers, SLAs, transfers, positions.

Each function translates with ``_()`` when called (the current update's language), then
fills named placeholders.
"""

from __future__ import annotations

import math
from html import escape

from bot.i18n import _
from bot.texts import conv_label
from routing.store.models import Conversation, Customer

# --- agents -----------------------------------------------------------------------------


def at_capacity(max_chats: int) -> str:
    return _(
        "You already hold {max_chats} open chats, your maximum. Close one with /close "
        "before taking another."
    ).format(max_chats=max_chats)


def not_your_tier(tier: str) -> str:
    return _("You do not serve {tier} customers; another agent will take this chat.").format(
        tier=escape(tier)
    )


def reserved() -> str:
    return _("This chat is waiting for the customer's own agent for a few more seconds.")


def offer(conv: Conversation, customer: Customer, preview: str | None, seconds: float) -> str:
    text = _("📨 <b>Chat offered to you: {label}</b>\nAccept within {seconds} s.").format(
        label=escape(conv_label(conv, customer)), seconds=int(seconds)
    )
    if preview:
        text += f"\n\n{escape(preview[:500])}"
    return text


def accept_button() -> str:
    return _("✅ Accept")


def decline_button() -> str:
    return _("↪️ Pass")


def offer_ended(conv: Conversation, customer: Customer, outcome: str) -> str:
    label = escape(conv_label(conv, customer))
    if outcome == "declined":
        return _("You passed on {label}; it goes to the next agent.").format(label=label)
    if outcome == "withdrawn":
        return _("{label} was taken by another agent.").format(label=label)
    return _("The offer of {label} timed out; it went to the next agent.").format(label=label)


def offer_gone() -> str:
    return _("This offer is no longer open.")


def reannounce(conv: Conversation, customer: Customer, level: str, waited_s: float) -> str:
    label = escape(conv_label(conv, customer))
    if level == "breach":
        return _(
            "🚨 <b>{label}</b> has waited {minutes} min: its response target is missed."
        ).format(label=label, minutes=_minutes(waited_s))
    return _("⏰ <b>{label}</b> has waited {minutes} min and nears its response target.").format(
        label=label, minutes=_minutes(waited_s)
    )


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


def transfer_usage() -> str:
    return _(
        "/transfer alone puts the chat back in the queue (it keeps its place).\n"
        "/transfer NAME note - hand it to that agent, with a note they will see."
    )


def transfer_unknown(name: str) -> str:
    return _("There is no agent called {name}.").format(name=escape(name))


def transfer_refused(name: str, reason: str) -> str:
    if reason == "offline":
        return _("{name} is offline; the chat stays with you.").format(name=escape(name))
    if reason == "capacity":
        return _("{name} has no free capacity; the chat stays with you.").format(name=escape(name))
    if reason == "tier":
        return _("{name} does not serve this tier; the chat stays with you.").format(
            name=escape(name)
        )
    if reason == "self":
        return _("That is you.")
    return _("That chat is already closed.")


def transferred_to_queue(conv: Conversation, customer: Customer) -> str:
    return _("{label} is back in the queue, in its original place.").format(
        label=escape(conv_label(conv, customer))
    )


def transferred_to_agent(conv: Conversation, customer: Customer, name: str) -> str:
    return _("{label} is now with {name}.").format(
        label=escape(conv_label(conv, customer)), name=escape(name)
    )


def transfer_note(from_name: str, note: str | None) -> str:
    if note:
        return _(
            "🔁 Transferred by {agent}. Note: {note}\nThe conversation so far follows."
        ).format(agent=escape(from_name), note=escape(note))
    return _("🔁 Transferred by {agent}. The conversation so far follows.").format(
        agent=escape(from_name)
    )


def customer_transferred(name: str | None) -> str:
    if name:
        return _("You are being transferred to {agent}, who will continue here.").format(
            agent=escape(name)
        )
    return _("You are being transferred to another member of our team. Please stay here.")


def requeued_chats(n: int) -> str:
    return _("Your {n} open chat(s) went back to the front of the queue.").format(n=n)


def silent_agent(n: int) -> str:
    return _(
        "You did not answer for a while, so you are now offline and your {n} open chat(s) "
        "went back to the queue. Send /online when you are back."
    ).format(n=n)


def customer_requeued() -> str:
    return _(
        "Your agent had to step away. You are back in the queue, first in line, and the next "
        "available person will continue with you here."
    )


# --- customers --------------------------------------------------------------------------


def _minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


def position(pos: int, eta_s: float | None) -> str:
    head = _("You are number {position} in the queue.").format(position=pos)
    if eta_s is None:
        tail = _("No agent is online right now; a person will answer as soon as one is.")
    elif eta_s < 60:
        tail = _("Estimated wait: less than a minute.")
    else:
        tail = _("Estimated wait: about {minutes} min.").format(minutes=_minutes(eta_s))
    return f"{head} {tail}"


def inactivity_warning(minutes: int) -> str:
    return _(
        "Are you still there? This chat will close in {minutes} min if we do not hear from you."
    ).format(minutes=minutes)


def inactivity_closed_customer() -> str:
    return _("We closed this chat as we did not hear back. Write any time to start again.")


def inactivity_closed_agent(conv: Conversation, customer: Customer) -> str:
    return _("{label} was closed: the customer did not answer.").format(
        label=escape(conv_label(conv, customer))
    )
