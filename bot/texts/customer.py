"""What customers read: identification, self-service, the queue, the command menu.

Every text is a function translating at call time (see :mod:`bot.texts`).
"""

from __future__ import annotations

import math
from datetime import datetime
from html import escape

from bot.i18n import _
from routing.store.models import Customer

# --- identification ---------------------------------------------------------------------


def ask_identify() -> str:
    return _(
        "Welcome! To serve you as a known customer, tap <b>Share my phone number</b> below, "
        "or send your customer code."
    )


def ask_identify_no_code() -> str:
    return _(
        "Welcome! To serve you as a known customer, tap <b>Share my phone number</b> below, "
        "or open the invitation link we sent you."
    )


def share_phone_button() -> str:
    return _("📱 Share my phone number")


def foreign_contact() -> str:
    return _(
        "For your security I can only accept your own phone number. Please use the "
        "<b>Share my phone number</b> button."
    )


def phone_not_found() -> str:
    return _(
        "Thank you. I could not find a customer record with this phone number, so I will "
        "serve you as a guest. You can still send your customer code."
    )


def phone_not_found_no_code() -> str:
    return _(
        "Thank you. I could not find a customer record with this phone number, so I will "
        "serve you as a guest. If we sent you an invitation link, open it to be recognised."
    )


def code_failed() -> str:
    """The one reply to every failed customer code: unknown, already linked, too many tries."""
    return _(
        "I could not link you with that code. Please share your phone number instead, try "
        "again later, or tap /menu to continue as a guest."
    )


def invite_failed() -> str:
    """The one reply to every failed invitation link: unknown, used or expired."""
    return _(
        "This invitation link is not valid (it may have been used already or have expired). "
        "Please share your phone number, or ask us for a new link."
    )


def relinked_away() -> str:
    return _(
        "Your customer account has just been linked to another Telegram account, so this "
        "chat no longer speaks for it. If this was not you, please contact us at once."
    )


def _name(customer: Customer) -> str:
    return escape(customer.name or _("there"))


def _vip_suffix() -> str:
    return _("Just write your message: a person from our team will answer you.")


def identified(customer: Customer, vip: bool) -> str:
    text = _("Thank you, {name}! You are recognised as our customer.").format(name=_name(customer))
    return f"{text} {_vip_suffix()}" if vip else text


def welcome_back(customer: Customer, vip: bool) -> str:
    text = _("Welcome back, {name}!").format(name=_name(customer))
    return f"{text} {_vip_suffix()}" if vip else text


# --- commands and buttons ---------------------------------------------------------------


def commands() -> list[tuple[str, str]]:
    """The command menu Telegram shows customers: (command, description)."""
    return [
        ("start", _("Identify yourself")),
        ("menu", _("Self-service topics")),
        ("human", _("Talk to a person")),
        ("complaint", _("File a complaint")),
        ("help", _("Help")),
        ("stop_surveys", _("Stop receiving surveys")),
        ("stop_news", _("Stop receiving announcements")),
    ]


def help_text() -> str:
    return _(
        "/start - identify yourself\n/menu - self-service topics\n/human - talk to a person\n"
        "/complaint - file a complaint\n"
        "/stop_surveys - stop receiving surveys\n/start_surveys - receive surveys again\n"
        "/stop_news - stop receiving announcements\n/start_news - receive announcements again\n"
        "/help - this help\n\nYou can also just type your question."
    )


def unknown_command() -> str:
    return _("I do not know that command.")


def too_fast() -> str:
    """Flood control's one notice (bot/throttle.py)."""
    return _("You are sending messages too fast. Please wait a few seconds, then go on.")


def human_button() -> str:
    return _("🙋 Talk to a person")


def menu_button() -> str:
    return _("📋 Menu")


def back_button() -> str:
    return _("⬅️ Back")


def home_button() -> str:
    return _("🏠 Main menu")


def link_button() -> str:
    return _("🔗 More")


def topic_gone() -> str:
    return _("This topic is no longer available.")


def button_gone() -> str:
    return _("This button is no longer active.")


# --- self-service -----------------------------------------------------------------------


def helped_yes() -> str:
    return _("👍 Yes, thanks")


def helped_no() -> str:
    return _("👎 No")


def did_it_help() -> str:
    return _("Did this answer your question?")


def glad_to_help() -> str:
    return _("Glad I could help! Write any time if you need anything else.")


def no_match() -> str:
    return _(
        "Sorry, I could not find an answer to that. Try different words, pick a topic from "
        "the menu, or talk to a person."
    )


def not_helped() -> str:
    return _("Sorry that did not help. Maybe one of these answers it, or talk to a person:")


def not_helped_no_more() -> str:
    return _("Sorry that did not help. A person can take it from here:")


def suggestions() -> str:
    return _("I am not sure I understood. Did you mean one of these?")


def answer(question: str, body: str) -> str:
    return f"<b>{escape(question)}</b>\n\n{body}"


def ask_order_id() -> str:
    return _("Send me the order number (as on your confirmation), or /menu to go back.")


def no_orders() -> str:
    return _("I could not find any orders for you.")


def guest_no_orders() -> str:
    return _(
        "I can only look up orders for identified customers: send /start to identify "
        "yourself first."
    )


def order_line(order_id: str, when: datetime, amount_cents: int, status: str | None) -> str:
    return _("#{order} · {date} · {amount} · {status}").format(
        order=escape(order_id),
        date=when.strftime("%Y-%m-%d"),
        amount=f"{amount_cents / 100:,.2f}",
        status=escape(status or _("unknown")),
    )


def my_orders(lines: list[str]) -> str:
    return _("<b>Your recent orders</b>") + "\n" + "\n".join(lines)


def order_status(order_id: str, when: datetime, status: str | None, amount_cents: int) -> str:
    return _("Order #{order} of {date} ({amount}): <b>{status}</b>").format(
        order=escape(order_id),
        date=when.strftime("%Y-%m-%d"),
        amount=f"{amount_cents / 100:,.2f}",
        status=escape(status or _("unknown")),
    )


def order_not_found(order_id: str) -> str:
    return _(
        "I could not find an order {order} on your account. Check the number and send it "
        "again, or /menu to go back."
    ).format(order=escape(order_id[:64]))


def my_tier(tier: str, benefits: str) -> str:
    text = _("Your tier: <b>{tier}</b>").format(tier=escape(tier))
    return f"{text}\n\n{benefits}" if benefits else text


def guest_tier(tier: str) -> str:
    return _(
        "You are using the bot as a guest (tier {tier}). Send /start and share your phone "
        "number to be recognised as our customer."
    ).format(tier=escape(tier))


# --- reaching a person ------------------------------------------------------------------


def human_after_selfservice() -> str:
    return _(
        "Please try the answers below first: pick a topic or type your question. If they do "
        "not help, I will put you through to a person."
    )


def human_never() -> str:
    return _(
        "Our team does not take chats for your account; the answers below cover the most "
        "common questions."
    )


def _no_agents() -> str:
    return _(
        "No agent is online right now. Your message is saved, and the first agent to come "
        "online will see it and answer you here."
    )


def queued(position: int, agents_online: int) -> str:
    if agents_online == 0:
        return _no_agents()
    return _(
        "A person from our team will be with you shortly. You are number {position} in the "
        "queue; you can keep writing here meanwhile."
    ).format(position=position)


def vip_queued(agents_online: int) -> str:
    if agents_online == 0:
        return _no_agents()
    return _("Thank you, a person from our team is coming to answer you right away.")


def already_queued(position: int) -> str:
    return _(
        "You are already in the queue (number {position}). A person will answer you here."
    ).format(position=position)


def already_with_agent(agent_name: str | None) -> str:
    return _("You are talking with {agent}; just write your message here.").format(
        agent=escape(agent_name or _("an agent"))
    )


def agent_joined(agent_name: str) -> str:
    return _("{agent} has joined the conversation and will answer you here.").format(
        agent=escape(agent_name)
    )


def out_of_hours(hours: str) -> str:
    return _(
        "Our team is away right now (opening hours: {hours}). Your request is saved in the "
        "queue, and a person will answer you here as soon as we are back."
    ).format(hours=escape(hours))


def opening_hours(spans: list[str], timezone: str) -> str:
    if not spans:
        return _("24/7")
    return _("{hours} ({timezone})").format(hours=", ".join(spans), timezone=timezone)


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


def transferred(name: str | None) -> str:
    if name:
        return _("You are being transferred to {agent}, who will continue here.").format(
            agent=escape(name)
        )
    return _("You are being transferred to another member of our team. Please stay here.")


def requeued() -> str:
    return _(
        "Your agent had to step away. You are back in the queue, first in line, and the next "
        "available person will continue with you here."
    )


# --- the end of a chat ------------------------------------------------------------------


def inactivity_warning(minutes: int) -> str:
    return _(
        "Are you still there? This chat will close in {minutes} min if we do not hear from you."
    ).format(minutes=minutes)


def inactivity_closed() -> str:
    return _("We closed this chat as we did not hear back. Write any time to start again.")


def conversation_closed() -> str:
    return _(
        "This conversation has been closed. Thank you for contacting us! Write any time if you "
        "need anything else."
    )
