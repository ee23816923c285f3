"""What agents read about care tasks: reminders, *Start chat*, *Done*, *Snooze*, ``/care``.

Agents are served in the desk's default language. Stored values (names, the trigger's
detail) are escaped. Every text is a function translating at call time (see
:mod:`bot.texts`); the customer card under a reminder is :mod:`bot.texts.card`'s.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from bot.i18n import _
from routing.care import tasks
from routing.care.agenda import Agenda, Entry
from routing.store.care_models import CARE_DONE, CARE_SNOOZED, CARE_STARTED, CareTask
from routing.store.models import Customer


def when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def span(seconds: float) -> str:
    """A duration as agents read it: minutes, hours or days."""
    seconds = abs(seconds)
    if seconds < 3600:
        return _("{n} min").format(n=max(1, round(seconds / 60)))
    if seconds < 48 * 3600:
        return _("{n} h").format(n=round(seconds / 3600))
    return _("{n} d").format(n=round(seconds / 86400))


def who(customer: Customer) -> str:
    return escape(customer.name or customer.external_id or f"#{customer.id}")


def reason(name: str) -> str:
    labels = {
        tasks.CADENCE: _("follow-up visit"),
        tasks.SCORE_DROP: _("score drop"),
        tasks.DOWNGRADE_PENDING: _("downgrade pending"),
        tasks.DETRACTOR: _("detractor answer"),
        tasks.COMPLAINT: _("complaint"),
    }
    return labels.get(name, escape(name))


def due(task: CareTask, now: datetime) -> str:
    """When the task is due, or how overdue it is; a snooze or a start says so instead."""
    if task.status == CARE_SNOOZED and task.snoozed_until is not None and task.snoozed_until > now:
        return _("snoozed until {until}").format(until=when(task.snoozed_until))
    left = (task.due_at - now).total_seconds()
    if abs(left) < 60:
        return _("due now")
    if left > 0:
        return _("due in {span} ({at})").format(span=span(left), at=when(task.due_at))
    return _("overdue by {span} (due {at})").format(span=span(left), at=when(task.due_at))


# --- reminders ----------------------------------------------------------------------------


def reminder(task: CareTask, customer: Customer, now: datetime, card: str) -> str:
    """A reminder: the task, why it exists, when it is due, then the customer card."""
    lines = [
        _("🔔 <b>Care task #{id}</b>: {reason} for {who}").format(
            id=task.id, reason=reason(task.reason), who=who(customer)
        )
    ]
    if task.detail:
        lines.append(_("Why: {detail}").format(detail=escape(task.detail)))
    when_due = due(task, now)
    lines.append(when_due[:1].upper() + when_due[1:])
    if task.status == CARE_STARTED and task.conversation_id is not None:
        lines.append(_("Started: chat #{conv}.").format(conv=task.conversation_id))
    if task.agent_id is None:
        lines.append(_("A pool task: whoever starts it takes it."))
    return "\n".join(lines) + "\n\n" + card


def start_button() -> str:
    return _("💬 Start chat")


def done_button() -> str:
    return _("✅ Done")


def snooze_button() -> str:
    return _("💤 Snooze")


# --- answers to the buttons -----------------------------------------------------------------


def unknown() -> str:
    return _("This care task does not exist.")


def not_yours() -> str:
    return _("This care task is another agent's.")


def not_now(task: CareTask | None) -> str:
    if task is not None and task.status == CARE_DONE:
        return _("This care task is done already.")
    if task is not None and task.status == CARE_STARTED:
        return _(
            "This care task was started already (chat #{conv}): press Done when it is finished."
        ).format(conv=task.conversation_id or "?")
    return _("This care task cannot do that now.")


def opened(conv_id: int, customer: Customer) -> str:
    return _(
        "Chat #{conv} with {who} is open and focused: your next message goes to them from "
        "the bot, and their replies come here. Close it with /close like any chat; press "
        "Done when the task is finished."
    ).format(conv=conv_id, who=who(customer))


def claimed(conv_id: int, customer: Customer) -> str:
    return _(
        "{who} was already waiting in chat #{conv}: you took it, and the task is linked to "
        "it. Your next message goes to them."
    ).format(conv=conv_id, who=who(customer))


def mine(conv_id: int, customer: Customer) -> str:
    return _(
        "{who} is already in your chat #{conv}: the task is linked to it and the chat is focused."
    ).format(conv=conv_id, who=who(customer))


def held_elsewhere(conv_id: int, customer: Customer, holder: str) -> str:
    return _(
        "{who} already has an open chat (#{conv}, with {holder}): no second chat was "
        "opened, and the task is linked to that one."
    ).format(conv=conv_id, who=who(customer), holder=escape(holder))


def waiting_elsewhere(conv_id: int, customer: Customer, refusal: str) -> str:
    return _(
        "{who} already has chat #{conv} waiting in the queue, and you cannot take it: "
        "{refusal} The task is linked to that chat."
    ).format(conv=conv_id, who=who(customer), refusal=refusal)


def no_chat(customer: Customer) -> str:
    return _(
        "{who} has no Telegram chat with the bot: contact them another way, then press Done "
        "with a note."
    ).format(who=who(customer))


def note_prompt(task_id: int, customer: Customer) -> str:
    return _(
        "Task #{id} ({who}): send a short note on how it went. Your next message is kept as "
        "the note and goes to no customer. Or send /done NOTE; /cancel keeps the task open."
    ).format(id=task_id, who=who(customer))


def done(task_id: int, customer: Customer) -> str:
    return _("Task #{id} ({who}) is done; your note is recorded.").format(
        id=task_id, who=who(customer)
    )


def which_task() -> str:
    return _(
        "Which task? Press Done under a care task (see /care), or send /done NOTE in the "
        "task's chat."
    )


def note_needed() -> str:
    return _("Send the note as text, or /done NOTE; /cancel keeps the task open.")


def cancelled() -> str:
    return _("Nothing recorded: the task stays open.")


def snoozed(task_id: int, until: datetime) -> str:
    return _("Task #{id} snoozed until {until}: you will be reminded then.").format(
        id=task_id, until=when(until)
    )


# --- /care ----------------------------------------------------------------------------------


def agenda_empty() -> str:
    return _("No pending care tasks.")


def _entry(entry: Entry, now: datetime, *, assignee: bool) -> str:
    t, c = entry.task, entry.customer
    line = _("#{id} {who} ({tier}) · {reason} · {due}").format(
        id=t.id, who=who(c), tier=escape(c.tier), reason=reason(t.reason), due=due(t, now)
    )
    if t.status == CARE_STARTED and t.conversation_id is not None:
        line += " · " + _("started: chat #{conv}").format(conv=t.conversation_id)
    if assignee:
        if t.agent_id is None:
            line += " · " + _("pool")
        else:
            name = entry.assignee.name if entry.assignee is not None else f"#{t.agent_id}"
            line += " · " + escape(name)
    return ("⚠️ " if entry.overdue else "• ") + line


def agenda(items: Agenda, now: datetime, *, assignee: bool) -> str:
    """``/care``: a header with the counts, one line per task, what the buttons do."""
    head = _("<b>Care tasks</b>: {total} pending, {overdue} overdue.").format(
        total=items.total, overdue=items.overdue
    )
    lines = [head, ""]
    lines += [_entry(e, now, assignee=assignee) for e in items.entries]
    if len(items.entries) < items.total:
        lines.append(_("… and {n} more.").format(n=items.total - len(items.entries)))
    lines += ["", _("Buttons: 💬 start chat, ✅ done (with a note), 💤 snooze.")]
    return "\n".join(lines)
