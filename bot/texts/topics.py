"""What agents read in the staff group (topics mode): the queue view, a topic's notices,
notes, edits. Served in the desk's language; every text is a function (see bot.texts)."""

from __future__ import annotations

from html import escape

from bot.i18n import _


def waiting(label: str, preview: str | None) -> str:
    text = _("🔔 <b>{label}</b> is waiting in the queue.").format(label=escape(label))
    if preview:
        text += "\n" + first_message(preview)
    return text


def first_message(preview: str) -> str:
    return _("First message: {preview}").format(preview=escape(preview))


def for_manager(mention: str) -> str:
    return _("{mention}: your account customer is waiting.").format(mention=mention)


def offer(mention: str, label: str, seconds: int) -> str:
    return _("{mention}: chat <b>{label}</b> is offered to you for {seconds} s.").format(
        mention=mention, label=escape(label), seconds=seconds
    )


def board(lines: list[str], total: int) -> str:
    if not lines:
        return _("📋 <b>Queue</b>: nobody is waiting.")
    head = _("📋 <b>Queue</b>: {total} waiting, by priority.").format(total=total)
    return head + "\n" + "\n".join(escape(line) for line in lines)


def note_kept() -> str:
    return _("📝 Note kept in the transcript (not sent to the customer).")


def not_holder(holder: str | None) -> str:
    if holder is None:
        return _("Nobody holds this chat: claim it first. Nothing was sent to the customer.")
    return _("{agent} holds this chat: nothing was sent to the customer.").format(
        agent=escape(holder)
    )


def no_open_chat() -> str:
    return _("This customer has no open chat.")


def customer_edited(text: str) -> str:
    return _("✏️ The customer edited a message: {text}").format(text=escape(text))


def closed(agent: str) -> str:
    return _("✅ Chat closed by {agent}.").format(agent=escape(agent))


def taken_over(agent: str) -> str:
    return _("🛡 {agent} took over this chat.").format(agent=escape(agent))
