"""Every user-facing string of the bot's core flows, translated at the moment of use.

Functions call ``_()`` when called. The upper-case names (``texts.NOW_ONLINE``) are not
constants: reading one translates it into the current update's language (module
``__getattr__``), so they can be used anywhere a ``str`` is expected, at call time.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from bot.i18n import N_, _
from routing.store.models import Conversation, Customer

_LAZY: dict[str, str] = {
    # --- customers -----------------------------------------------------------------------
    "ASK_IDENTIFY": N_(
        "Welcome! To serve you as a known customer, tap <b>Share my phone number</b> below, "
        "or send your customer code."
    ),
    "SHARE_PHONE_BUTTON": N_("📱 Share my phone number"),
    "FOREIGN_CONTACT": N_(
        "For your security I can only accept your own phone number. Please use the "
        "<b>Share my phone number</b> button."
    ),
    "PHONE_NOT_FOUND": N_(
        "Thank you. I could not find a customer record with this phone number, so I will "
        "serve you as a guest. You can still send your customer code."
    ),
    "ASK_IDENTIFY_NO_CODE": N_(
        "Welcome! To serve you as a known customer, tap <b>Share my phone number</b> below, "
        "or open the invitation link we sent you."
    ),
    # The one reply to every failed customer code: unknown, already linked, too many tries.
    "CODE_FAILED": N_(
        "I could not link you with that code. Please share your phone number instead, try "
        "again later, or tap /menu to continue as a guest."
    ),
    # The one reply to every failed invitation link: unknown, used or expired.
    "INVITE_FAILED": N_(
        "This invitation link is not valid (it may have been used already or have expired). "
        "Please share your phone number, or ask us for a new link."
    ),
    "PHONE_NOT_FOUND_NO_CODE": N_(
        "Thank you. I could not find a customer record with this phone number, so I will "
        "serve you as a guest. If we sent you an invitation link, open it to be recognised."
    ),
    "RELINKED_AWAY": N_(
        "Your customer account has just been linked to another Telegram account, so this "
        "chat no longer speaks for it. If this was not you, please contact us at once."
    ),
    "HUMAN_BUTTON": N_("🙋 Talk to a person"),
    "MENU_BUTTON": N_("📋 Menu"),
    "BACK_BUTTON": N_("⬅️ Back"),
    "HOME_BUTTON": N_("🏠 Main menu"),
    "VIP_WELCOME_SUFFIX": N_("Just write your message: a person from our team will answer you."),
    "QUEUED_NO_AGENTS": N_(
        "No agent is online right now. Your message is saved, and the first agent to come "
        "online will see it and answer you here."
    ),
    "CONVERSATION_CLOSED_FOR_CUSTOMER": N_(
        "This conversation has been closed. Thank you for contacting us! Write any time if you "
        "need anything else."
    ),
    "CUSTOMER_HELP": N_(
        "/start - identify yourself\n/menu - self-service topics\n/human - talk to a person\n"
        "/stop_surveys - stop receiving surveys\n/start_surveys - receive surveys again\n"
        "/help - this help\n\nYou can also just type your question."
    ),
    "TOPIC_GONE": N_("This topic is no longer available."),
    "BUTTON_GONE": N_("This button is no longer active."),
    "HELPED_YES": N_("👍 Yes, thanks"),
    "HELPED_NO": N_("👎 No"),
    "DID_IT_HELP": N_("Did this answer your question?"),
    "GLAD_TO_HELP": N_("Glad I could help! Write any time if you need anything else."),
    "NO_MATCH": N_(
        "Sorry, I could not find an answer to that. Try different words, pick a topic from "
        "the menu, or talk to a person."
    ),
    "NOT_HELPED": N_(
        "Sorry that did not help. Maybe one of these answers it, or talk to a person:"
    ),
    "NOT_HELPED_NO_MORE": N_("Sorry that did not help. A person can take it from here:"),
    "SUGGESTIONS": N_("I am not sure I understood. Did you mean one of these?"),
    "ASK_ORDER_ID": N_("Send me the order number (as on your confirmation), or /menu to go back."),
    "NO_ORDERS": N_("I could not find any orders for you."),
    "GUEST_NO_ORDERS": N_(
        "I can only look up orders for identified customers: send /start to identify "
        "yourself first."
    ),
    "HUMAN_AFTER_SELFSERVICE": N_(
        "Please try the answers below first: pick a topic or type your question. If they do "
        "not help, I will put you through to a person."
    ),
    "HUMAN_NEVER": N_(
        "Our team does not take chats for your account; the answers below cover the most "
        "common questions."
    ),
    "LINK_BUTTON": N_("🔗 More"),
    # --- agents ---------------------------------------------------------------------------
    "AGENT_HELP": N_(
        "/online - start taking chats\n/offline - stop taking chats\n"
        "/queue - waiting chats by priority\n/next - take the highest-priority waiting chat\n"
        "/transfer - put the chat back in the queue; /transfer NAME note - hand it to that "
        "agent\n"
        "/chats - your open chats (focus or close one)\n/close - close the current chat\n"
        "/help - this help\n\n"
        "Your messages go to the customer of the chat you reply to, else your focused chat, "
        "else your only open chat."
    ),
    "SUPERVISOR_HELP_SUFFIX": N_("\n/stats - queue and agent figures"),
    "NOW_ONLINE": N_("You are online. New chats will be sent to you."),
    "NOW_OFFLINE": N_("You are offline. You will not be paged for new chats."),
    "QUEUE_EMPTY": N_("The queue is empty."),
    "NO_OPEN_CHATS": N_("You have no open chat. Use /next or /queue to take one."),
    "NOT_YOURS": N_("That chat is no longer yours, so the message was not sent."),
    "CLAIM_BUTTON": N_("✋ Claim"),
    "UNKNOWN_COMMAND": N_("I do not know that command."),
}


def _lazy(name: str) -> str:
    return _(_LAZY[name])


def __getattr__(name: str) -> str:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _lazy(name)


def _name(customer: Customer) -> str:
    return escape(customer.name or _("there"))


def identified(customer: Customer, vip: bool) -> str:
    text = _("Thank you, {name}! You are recognised as our customer.").format(name=_name(customer))
    return f"{text} {_lazy('VIP_WELCOME_SUFFIX')}" if vip else text


def welcome_back(customer: Customer, vip: bool) -> str:
    text = _("Welcome back, {name}!").format(name=_name(customer))
    return f"{text} {_lazy('VIP_WELCOME_SUFFIX')}" if vip else text


def relink_note(customer: Customer, by_invitation: bool) -> str:
    """One line for the account manager when their customer moves to a new Telegram user."""
    how = _("an invitation link") if by_invitation else _("their shared phone number")
    return _(
        "🔁 {name} ({code}, {tier}) is now linked to another Telegram account, by {how}; "
        "the previous account was told."
    ).format(
        name=_name(customer),
        code=escape(customer.external_id or "?"),
        tier=escape(customer.tier),
        how=how,
    )


def queued(position: int, agents_online: int) -> str:
    if agents_online == 0:
        return _lazy("QUEUED_NO_AGENTS")
    return _(
        "A person from our team will be with you shortly. You are number {position} in the "
        "queue; you can keep writing here meanwhile."
    ).format(position=position)


def vip_queued(agents_online: int) -> str:
    if agents_online == 0:
        return _lazy("QUEUED_NO_AGENTS")
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


# --- self-service ---------------------------------------------------------------------
def answer(question: str, body: str) -> str:
    return f"<b>{escape(question)}</b>\n\n{body}"


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


# --- agents ---------------------------------------------------------------------------
def still_open_chats(n: int) -> str:
    return _("You still have {n} open chat(s): close them with /close, or they stay yours.").format(
        n=n
    )


def ambiguous(n: int) -> str:
    return _(
        "You have {n} open chats, so I did not send that. Reply to one of the customer's "
        "messages, or pick the chat to focus:"
    ).format(n=n)


def conv_label(conv: Conversation, customer: Customer) -> str:
    name = customer.name or (_("guest") if customer.is_guest else customer.external_id or "?")
    return f"#{conv.id} · {conv.tier} · {name}"


def language_name(code: str | None) -> str | None:
    """A language tag as a name in the reader's language, e.g. zh-CN -> 'Chinese (China)'."""
    if not code:
        return None
    from babel import Locale, UnknownLocaleError

    from bot.i18n import current_locale

    try:
        loc = Locale.parse(code.replace("-", "_"))
        return f"{loc.get_display_name(current_locale())} ({code})"
    except (UnknownLocaleError, ValueError, TypeError):
        return code


def notification(conv: Conversation, customer: Customer, preview: str | None, manager: bool) -> str:
    head = _("🔔 <b>New chat {label}</b>").format(label=escape(conv_label(conv, customer)))
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


def taken_by(conv: Conversation, customer: Customer, agent_name: str) -> str:
    return _("Chat {label} was taken by {agent}.").format(
        label=escape(conv_label(conv, customer)), agent=escape(agent_name)
    )


def you_took(conv: Conversation, customer: Customer) -> str:
    return _("✅ You took chat <b>{label}</b>. The customer's messages follow.").format(
        label=escape(conv_label(conv, customer))
    )


def lost_claim(agent_name: str) -> str:
    return _("Already taken by {agent}.").format(agent=agent_name)


def header(conv: Conversation, customer: Customer) -> str:
    return f"— {escape(conv_label(conv, customer))} —"


def closed_for_agent(conv: Conversation, customer: Customer) -> str:
    return _("Closed chat {label}.").format(label=escape(conv_label(conv, customer)))


def chats_list(n: int) -> str:
    return _("Your open chats ({n}):").format(n=n) if n else _lazy("NO_OPEN_CHATS")


def queue_list(n_shown: int, n_total: int) -> str:
    if n_total > n_shown:
        return _("Waiting chats by priority: {total} (showing the first {shown})").format(
            total=n_total, shown=n_shown
        )
    return _("Waiting chats by priority: {total}").format(total=n_total)


def focused(conv: Conversation, customer: Customer) -> str:
    return _("Focused on {label}: your messages go there.").format(
        label=escape(conv_label(conv, customer))
    )


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
