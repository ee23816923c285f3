"""Complaint cases, for everyone who reads about them: the customer filing one (category,
description, the case number), the agent handling it (``/complaint``, ``/remedy``,
``/resolve`` and their one-line refusals), the account manager paged about it, and the
supervisors' SLA alerts.

Category labels and the follow-up questions are the policy's own texts (``[complaints]``,
per language); what is here is the bot's frame around them. Every text is a function
translating at call time (see :mod:`bot.texts`); values from outside (names, notes, policy
texts) are escaped by the caller or here, since messages are sent as HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from bot.i18n import _

# --- the customer ------------------------------------------------------------------------


def ask_category() -> str:
    return _("What is your complaint about? Pick a category below (or /cancel).")


def cancel_button() -> str:
    return _("✖️ Cancel")


def complaint_button() -> str:
    """On the self-service "did not help" path: turns it into a complaint."""
    return _("📝 File a complaint")


def ask_description(label: str) -> str:
    return _(
        "Complaint about: {category}.\nNow describe what happened in one message: text, a "
        "photo, a voice message or a document. /cancel to stop."
    ).format(category=escape(label))


def pick_category_first() -> str:
    return _("Please pick a category with the buttons above, or /cancel.")


def category_gone() -> str:
    return _("That category is no longer offered. Please pick another one.")


def cancelled() -> str:
    return _("Cancelled: no complaint was filed.")


def filed(case: int) -> str:
    return _(
        "Thank you. Your complaint is registered as case #{case}. A person will contact you "
        "here as soon as possible; anything you send in this chat reaches them."
    ).format(case=case)


def off() -> str:
    return _(
        "Complaints cannot be filed here at the moment. Please use /human to talk to a person."
    )


def opened_for_you(case: int, label: str) -> str:
    """When an agent registers the customer's complaint on the chat in hand."""
    return _("Your complaint is registered as case #{case} ({category}).").format(
        case=case, category=escape(label)
    )


def resolved_for_you(case: int) -> str:
    return _("Your complaint #{case} has been resolved. Thank you for your patience.").format(
        case=case
    )


def yes_button() -> str:
    return _("👍 Yes, resolved")


def no_button() -> str:
    return _("👎 Not resolved")


# --- the agent handling it ----------------------------------------------------------------


def _names(names: Sequence[str]) -> str:
    return escape(", ".join(names))


def complaint_usage(categories: Sequence[str]) -> str:
    return _("Usage: /complaint CATEGORY [note]. Categories: {categories}.").format(
        categories=_names(categories)
    )


def unknown_category(given: str, categories: Sequence[str]) -> str:
    return _('No complaint category "{given}". Categories: {categories}.').format(
        given=escape(given), categories=_names(categories)
    )


def opened_for_agent(case: int, category: str) -> str:
    return _(
        "Complaint #{case} ({category}) opened on this chat, acknowledged by you. Record a "
        "remedy with /remedy KIND [amount] [note], then /resolve [note]."
    ).format(case=case, category=escape(category))


def which_chat(n: int) -> str:
    return _(
        "You have {n} open chats: reply to one of the customer's messages with the command, "
        "or focus a chat and send it again."
    ).format(n=n)


def no_case() -> str:
    return _("This chat carries no complaint. Open one with /complaint CATEGORY [note].")


def remedy_usage(kinds: Sequence[str]) -> str:
    return _("Usage: /remedy KIND [amount] [note]. Kinds: {kinds}.").format(kinds=_names(kinds))


def unknown_remedy(given: str, kinds: Sequence[str]) -> str:
    return _('No remedy kind "{given}". Kinds: {kinds}.').format(
        given=escape(given), kinds=_names(kinds)
    )


def bad_amount(given: str) -> str:
    return _('Bad amount "{given}": use a number such as 25 or 25.50 (not negative).').format(
        given=escape(given)
    )


def remedy_recorded(case: int, kind: str, amount: str | None) -> str:
    what = f"{kind} {amount}" if amount else kind
    return _("Remedy recorded on complaint #{case}: {remedy}.").format(
        case=case, remedy=escape(what)
    )


def resolved_for_agent(case: int) -> str:
    return _(
        "Complaint #{case} resolved. The customer will be asked whether it was resolved to "
        "their satisfaction. The chat stays open: /close it when you are done."
    ).format(case=case)


def already_resolved(case: int) -> str:
    return _("Complaint #{case} is already resolved.").format(case=case)


def complaints_off() -> str:
    return _("Complaints are switched off in the policy ([complaints] enabled).")


def case_note(summary: str) -> str:
    """The case, in the agent's chat, when it joins a chat they already hold."""
    return "📝 " + escape(summary)


def reopened_note(summary: str) -> str:
    return _("📝 The customer is not satisfied; the case is open again.\n{summary}").format(
        summary=escape(summary)
    )


def manager_page(name: str, summary: str, conversation_id: int) -> str:
    """To the account manager of a human_first customer who complained (or said "no")."""
    return _(
        "Your customer {name} has a complaint. Chat #{conversation} carries it.\n{summary}"
    ).format(name=escape(name), conversation=conversation_id, summary=escape(summary))


# --- supervisors (and the account manager of a breached VIP case) ---------------------------


def duration(seconds: float) -> str:
    """A target's length as people read it: 45 min, 4 h, 1 d 6 h."""
    minutes = int(seconds // 60) if seconds >= 60 else (1 if seconds > 0 else 0)
    if minutes < 60:
        return _("{m} min").format(m=minutes)
    hours, mins = divmod(minutes, 60)
    if hours < 24:
        return _("{h} h {m} min").format(h=hours, m=mins) if mins else _("{h} h").format(h=hours)
    days, hours = divmod(hours, 24)
    return _("{d} d {h} h").format(d=days, h=hours) if hours else _("{d} d").format(d=days)


def sla_alert(
    case: int,
    who: str,
    tier: str,
    target: str,
    level: str,
    elapsed_s: float,
    target_s: float,
    agent_name: str | None,
) -> str:
    what = _("acknowledgement") if target == "acknowledge" else _("resolution")
    head = (
        _("🚨 Complaint SLA breach ({what}): #{case} · {tier} · {who}")
        if level == "breach"
        else _("⚠️ Complaint SLA warning ({what}): #{case} · {tier} · {who}")
    ).format(what=what, case=case, tier=escape(tier), who=escape(who))
    body = _("{elapsed} elapsed of a {target} target.").format(
        elapsed=duration(elapsed_s), target=duration(target_s)
    )
    handler = (
        _("Handled by {agent}.").format(agent=escape(agent_name))
        if agent_name
        else _("No agent has answered it yet.")
    )
    return f"{head}\n{body}\n{handler}"
