"""What agents read: the desk (notifications, claims, offers, transfers, the chat list),
notes on messages that could not reach a customer, pages to account managers.

Agents are served in the desk's default language. Every text is a function translating at
call time (see :mod:`bot.texts`).
"""

from __future__ import annotations

import functools
import math
from html import escape

from bot.i18n import _, current_locale
from routing.store.models import Conversation, Customer

# --- commands ---------------------------------------------------------------------------


def commands(*, supervisor: bool = False) -> list[tuple[str, str, str]]:
    """Every agent command as (command, arguments, description): the one list /help and the
    agents' command menu are made from. ``supervisor``: the supervisors' own commands."""
    if supervisor:
        return [
            ("stats", "", _("queue and agent figures")),
            ("takeover", "", _("take over the chat of the topic you are in from its agent")),
        ]
    return [
        ("online", "", _("start taking chats")),
        ("offline", "", _("stop taking chats (your open chats go back to the queue)")),
        ("queue", "", _("waiting chats by priority")),
        ("next", "", _("take the highest-priority waiting chat")),
        ("chats", "", _("your open chats (focus or close one)")),
        ("close", "", _("close the current chat")),
        (
            "transfer",
            _("[NAME note]"),
            _("put the chat back in the queue; with a name, hand it to that agent with a note"),
        ),
        ("note", _("TEXT"), _("an internal note on the chat, never sent to the customer")),
        (
            "r",
            _("KEY"),
            _("send a canned reply in the customer's language (/r alone lists them)"),
        ),
        ("complaint", _("CATEGORY [note]"), _("turn the chat into a complaint")),
        ("remedy", _("KIND [amount] [note]"), _("record the remedy of the chat's complaint")),
        ("resolve", _("[note]"), _("resolve the chat's complaint")),
        ("care", "", _("your care tasks")),
        ("done", _("NOTE"), _("mark a care task done, with a note")),
        ("cancel", "", _("while a care task asks for its note: keep the task open")),
        ("help", "", _("this help")),
    ]


def _command_lines(items: list[tuple[str, str, str]]) -> list[str]:
    return [
        f"/{c}{' ' + escape(a, quote=False) if a else ''} - {escape(d, quote=False)}"
        for c, a, d in items
    ]


def help_text(*, supervisor: bool = False) -> str:
    """Every agent command (and the supervisors' with ``supervisor``), then how a message
    finds its customer."""
    lines = _command_lines(commands())
    if supervisor:
        lines += _command_lines(commands(supervisor=True))
    footer = _(
        "Your messages go to the customer of the chat you reply to, else your focused chat, "
        "else your only open chat. In inline mode (type @ and the bot's name, then a word) "
        "you pick a canned reply."
    )
    return "\n".join(lines) + "\n\n" + footer


def unknown_command() -> str:
    return _("I do not know that command.")


def button_gone() -> str:
    return _("This button is no longer active.")


def now_online() -> str:
    return _("You are online. New chats will be sent to you.")


def now_offline() -> str:
    return _("You are offline. You will not be paged for new chats.")


def still_open_chats(n: int) -> str:
    return _("You still have {n} open chat(s): close them with /close, or they stay yours.").format(
        n=n
    )


def requeued_chats(n: int) -> str:
    return _("Your {n} open chat(s) went back to the front of the queue.").format(n=n)


def silent_agent(n: int) -> str:
    return _(
        "You did not answer for a while, so you are now offline and your {n} open chat(s) "
        "went back to the queue. Send /online when you are back."
    ).format(n=n)


# --- a chat and its customer ------------------------------------------------------------


def conv_label(conv: Conversation, customer: Customer) -> str:
    name = customer.name or (_("guest") if customer.is_guest else customer.external_id or "?")
    return f"#{conv.id} · {conv.tier} · {name}"


def _label(conv: Conversation, customer: Customer) -> str:
    return escape(conv_label(conv, customer))


def header(conv: Conversation, customer: Customer) -> str:
    """Says whose messages follow, when the agent has several chats open."""
    return f"— {_label(conv, customer)} —"


def language_name(code: str | None) -> str | None:
    """A language tag as a name in the reader's language, e.g. zh-CN -> 'Chinese (China)'."""
    if not code:
        return None
    return _language_name(code, current_locale())


@functools.lru_cache(maxsize=1024)
def _language_name(code: str, reader: str) -> str:
    # Babel's parse and display name cost about 0.1 ms, on every page of a new chat to
    # every agent (issue 19); a deployment sees a few dozen language tags.
    from babel import Locale, UnknownLocaleError

    try:
        loc = Locale.parse(code.replace("-", "_"))
        return f"{loc.get_display_name(reader)} ({code})"
    except (UnknownLocaleError, ValueError, TypeError):
        return code


def notification(conv: Conversation, customer: Customer, preview: str | None, manager: bool) -> str:
    head = _("🔔 <b>New chat {label}</b>").format(label=_label(conv, customer))
    if manager:
        head += "\n" + _("(your account customer)")
    if customer.is_guest:
        head += "\n" + _("unidentified guest")
    lang = language_name(customer.language)
    if lang:
        head += "\n" + _("Language: {language}").format(language=escape(lang))
    if preview:
        head += f"\n\n{escape(preview[:500])}"
    return head


def relink_note(customer: Customer, by_invitation: bool) -> str:
    """One line for the account manager when their customer moves to a new Telegram user."""
    how = _("an invitation link") if by_invitation else _("their shared phone number")
    return _(
        "🔁 {name} ({code}, {tier}) is now linked to another Telegram account, by {how}; "
        "the previous account was told."
    ).format(
        name=escape(customer.name or _("there")),
        code=escape(customer.external_id or "?"),
        tier=escape(customer.tier),
        how=how,
    )


def vip_detractor_page(name: str, summary: str, conversation_id: int) -> str:
    """To the account manager of a VIP who gave a low survey score."""
    return _(
        "Your VIP customer {name} gave a low survey score. A recovery chat #{conversation} "
        "is waiting in the queue.\n{summary}"
    ).format(name=name, conversation=conversation_id, summary=summary)


# --- the queue and claims ---------------------------------------------------------------


def queue_empty() -> str:
    return _("The queue is empty.")


def queue_list(n_shown: int, n_total: int) -> str:
    if n_total > n_shown:
        return _("Waiting chats by priority: {total} (showing the first {shown})").format(
            total=n_total, shown=n_shown
        )
    return _("Waiting chats by priority: {total}").format(total=n_total)


def claim_button() -> str:
    return _("✋ Claim")


def taken_by(conv: Conversation, customer: Customer, agent_name: str) -> str:
    return _("Chat {label} was taken by {agent}.").format(
        label=_label(conv, customer), agent=escape(agent_name)
    )


def you_took(conv: Conversation, customer: Customer) -> str:
    return _("✅ You took chat <b>{label}</b>.").format(label=_label(conv, customer))


def messages_follow() -> str:
    """After the card at a hand-over, when the customer's messages come next."""
    return _("The customer's messages follow.")


def history_follows() -> str:
    """At a hand-over of a chat another agent held (requeued): its transcript comes next."""
    return _("The conversation so far follows.")


def briefing(conv: Conversation, customer: Customer, card: str, *, follows: bool) -> str:
    """The hand-over's first message: whose chat it is, the customer card, and whether the
    customer's messages follow (not when the question was asked in self-service: the card
    shows it)."""
    # No card when the customer's forum topic shows it already (topics mode).
    text = f"{you_took(conv, customer)}\n\n{card}" if card else you_took(conv, customer)
    return f"{text}\n\n{messages_follow()}" if follows else text


def lost_claim(agent_name: str) -> str:
    return _("Already taken by {agent}.").format(agent=agent_name)


def someone_else() -> str:
    """Who holds a chat when the holder is not known (in "Already taken by {agent}")."""
    return _("someone else")


def chat_gone() -> str:
    return _("This chat no longer exists.")


def chat_closed() -> str:
    """A press on the Claim button of a chat that has been closed since."""
    return _("This chat is already closed.")


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


def _minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


def reannounce(conv: Conversation, customer: Customer, level: str, waited_s: float) -> str:
    label = _label(conv, customer)
    if level == "breach":
        return _(
            "🚨 <b>{label}</b> has waited {minutes} min: its response target is missed."
        ).format(label=label, minutes=_minutes(waited_s))
    return _("⏰ <b>{label}</b> has waited {minutes} min and nears its response target.").format(
        label=label, minutes=_minutes(waited_s)
    )


# --- offers -----------------------------------------------------------------------------


def offer(conv: Conversation, customer: Customer, preview: str | None, seconds: float) -> str:
    text = _("📨 <b>Chat offered to you: {label}</b>\nAccept within {seconds} s.").format(
        label=_label(conv, customer), seconds=int(seconds)
    )
    if preview:
        text += f"\n\n{escape(preview[:500])}"
    return text


def accept_button() -> str:
    return _("✅ Accept")


def decline_button() -> str:
    return _("↪️ Pass")


def offer_ended(conv: Conversation, customer: Customer, outcome: str) -> str:
    label = _label(conv, customer)
    if outcome == "declined":
        return _("You passed on {label}; it goes to the next agent.").format(label=label)
    if outcome == "withdrawn":
        return _("{label} was taken by another agent.").format(label=label)
    return _("The offer of {label} timed out; it went to the next agent.").format(label=label)


def offer_gone() -> str:
    return _("This offer is no longer open.")


# --- the open chats ---------------------------------------------------------------------


def no_open_chats() -> str:
    return _("You have no open chat. Use /next or /queue to take one.")


def not_yours() -> str:
    return _("That chat is no longer yours, so the message was not sent.")


def chats_list(n: int) -> str:
    return _("Your open chats ({n}):").format(n=n) if n else no_open_chats()


def ambiguous(n: int) -> str:
    return _(
        "You have {n} open chats, so I did not send that. Reply to one of the customer's "
        "messages, or pick the chat to focus:"
    ).format(n=n)


def focused(conv: Conversation, customer: Customer) -> str:
    return _("Focused on {label}: your messages go there.").format(label=_label(conv, customer))


def close_button() -> str:
    return _("Close")


def close_chat_button(label: str) -> str:
    return _("Close {label}").format(label=label)


def which_chat_to_close() -> str:
    return _("Which chat do you want to close?")


def closed_already() -> str:
    """/close (or a Close button) on a chat that someone or something closed first."""
    return _("That chat was already closed.")


def closed_for_agent(conv: Conversation, customer: Customer) -> str:
    return _("Closed chat {label}.").format(label=_label(conv, customer))


def inactivity_closed(conv: Conversation, customer: Customer) -> str:
    return _("{label} was closed: the customer did not answer.").format(
        label=_label(conv, customer)
    )


# --- transfers --------------------------------------------------------------------------


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
        label=_label(conv, customer)
    )


def transferred_to_agent(conv: Conversation, customer: Customer, name: str) -> str:
    return _("{label} is now with {name}.").format(label=_label(conv, customer), name=escape(name))


def transfer_note(from_name: str, note: str | None) -> str:
    if note:
        return _(
            "🔁 Transferred by {agent}. Note: {note}\nThe conversation so far follows."
        ).format(agent=escape(from_name), note=escape(note))
    return _("🔁 Transferred by {agent}. The conversation so far follows.").format(
        agent=escape(from_name)
    )


# --- messages that did not reach the customer -------------------------------------------


def not_reachable() -> str:
    return _("This customer is no longer reachable on Telegram; the message was not sent.")


def blocked(n: int) -> str:
    """The customer blocked the bot: ``n`` of the agent's messages were not delivered."""
    if n <= 1:
        return _("The customer has blocked the bot; the message was not delivered.")
    return _("The customer has blocked the bot; {n} messages were not delivered.").format(n=n)


def refused(error: str) -> str:
    """Telegram refused the message for good; ``error`` is its (escaped) reason."""
    return _("Telegram refused the message: {error}").format(error=error)


def gave_up() -> str:
    return _("Telegram could not be reached for too long; the message was not delivered.")


def search_step() -> str:
    """A search in the self-service path the card shows (the words are under "Asked")."""
    return _("search")


def someone() -> str:
    """An agent the transcript names who is no longer registered."""
    return _("(removed agent)")
