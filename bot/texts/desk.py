"""What agents read at their desk tools: internal notes, canned replies, and the labelled
transcript a hand-over shows of a chat someone held before. Every text is a function
translating at call time (see :mod:`bot.texts`)."""

from __future__ import annotations

from html import escape

from bot.i18n import _
from bot.texts.agent import conv_label
from routing.store.models import Conversation, Customer


def _label(conv: Conversation, customer: Customer) -> str:
    return escape(conv_label(conv, customer))


# --- internal notes ---------------------------------------------------------------------


def note_usage() -> str:
    return _(
        "/note TEXT keeps an internal note on the chat you address (reply, focus or your only "
        "chat). The customer never sees it; the next agent does."
    )


def note_kept(conv: Conversation, customer: Customer) -> str:
    return _("📝 Note kept on {label}. The customer does not see it.").format(
        label=_label(conv, customer)
    )


# --- canned replies ---------------------------------------------------------------------


def canned_list(keys: list[str]) -> str:
    if not keys:
        return _("There are no canned replies: the policy's [[desk.canned]] has none.")
    return _("Canned replies: {keys}\nSend one with /r KEY, or type @ and the bot's name.").format(
        keys=", ".join(escape(k) for k in keys)
    )


def canned_unknown(key: str, close: list[str]) -> str:
    if close:
        return _("No canned reply {key}. Did you mean: {close}?").format(
            key=escape(key), close=", ".join(escape(k) for k in close)
        )
    return _("No canned reply {key}. /r alone lists them.").format(key=escape(key))


def canned_missing(key: str, missing: list[str]) -> str:
    """A canned reply names a placeholder this customer has no value for."""
    return _(
        "Not sent: {key} needs {placeholders}, which this customer does not have. "
        "Write the message yourself."
    ).format(key=escape(key), placeholders=", ".join("{" + m + "}" for m in missing))


def canned_sent(conv: Conversation, customer: Customer, text: str) -> str:
    return _("↪️ Sent to {label}:\n{text}").format(label=_label(conv, customer), text=escape(text))


def transferred_in_topic(from_name: str, note: str | None) -> str:
    """Topics mode: a transfer's note; the topic already holds the conversation."""
    if note:
        return _(
            "🔁 Transferred by {agent}. Note: {note}\nThe conversation so far is above, in "
            "this topic."
        ).format(agent=escape(from_name), note=escape(note))
    return _("🔁 Transferred by {agent}. The conversation so far is above, in this topic.").format(
        agent=escape(from_name)
    )


def history_in_topic() -> str:
    """Topics mode: a chat someone held before is taken; its topic holds the conversation."""
    return _("The conversation so far is above, in this topic.")


# --- the labelled transcript (a transfer, a chat someone held before) -------------------


def transcript_customer(when: str, body: str) -> str:
    return _("Customer {time}: {text}").format(time=when, text=body)


def transcript_agent(name: str, when: str, body: str) -> str:
    return _("Agent {name} {time}: {text}").format(name=escape(name), time=when, text=body)


def transcript_note(name: str, when: str, body: str) -> str:
    return _("📝 Internal note by {name} {time}: {text}").format(
        name=escape(name), time=when, text=body
    )


def transcript_bot(when: str, body: str) -> str:
    """A note the bot keeps in the transcript (a survey answer, a complaint)."""
    return _("ℹ️ {time}: {text}").format(time=when, text=body)


def transcript_media(kind: str, n: int, caption: str | None) -> str:
    """A media message of the transcript, copied right after its label."""
    what = f"[{escape(kind)}]" if n == 1 else f"{n} × [{escape(kind)}]"
    if caption:
        return _("{what} {caption} (below)").format(what=what, caption=escape(caption))
    return _("{what} (below)").format(what=what)
