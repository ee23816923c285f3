"""Every user-facing string of the bot in one place (ready for gettext catalogs)."""

from __future__ import annotations

from html import escape

from routing.models import Conversation, Customer

# --- customers -------------------------------------------------------------------------
ASK_IDENTIFY = (
    "Welcome! To serve you as a known customer, tap <b>Share my phone number</b> below, "
    "or send your customer code."
)
SHARE_PHONE_BUTTON = "📱 Share my phone number"
FOREIGN_CONTACT = (
    "For your security I can only accept your own phone number. Please use the "
    "<b>Share my phone number</b> button."
)
CODE_NOT_FOUND = (
    "I could not find that customer code. Check it and send it again, share your phone "
    "number, or tap /menu to continue as a guest."
)
CODE_TAKEN = (
    "That customer code is already linked to another Telegram account. Please share your "
    "phone number instead so we can verify you."
)
PHONE_NOT_FOUND = (
    "Thank you. I could not find a customer record with this phone number, so I will "
    "serve you as a guest. You can still send your customer code."
)
HUMAN_BUTTON = "🙋 Talk to a person"
MENU_BUTTON = "📋 Menu"
BACK_BUTTON = "⬅️ Back"
VIP_WELCOME_SUFFIX = "Just write your message: a person from our team will answer you."
QUEUED_NO_AGENTS = (
    "No agent is online right now. Your message is saved, and the first agent to come "
    "online will see it and answer you here."
)
CONVERSATION_CLOSED_FOR_CUSTOMER = (
    "This conversation has been closed. Thank you for contacting us! Write any time if you "
    "need anything else."
)
CUSTOMER_HELP = (
    "/start - identify yourself\n/menu - self-service topics\n/human - talk to a person\n"
    "/help - this help"
)


def identified(customer: Customer, vip: bool) -> str:
    name = escape(customer.name or "there")
    text = f"Thank you, {name}! You are recognised as our customer."
    return f"{text} {VIP_WELCOME_SUFFIX}" if vip else text


def welcome_back(customer: Customer, vip: bool) -> str:
    name = escape(customer.name or "there")
    return f"Welcome back, {name}! {VIP_WELCOME_SUFFIX}" if vip else f"Welcome back, {name}!"


def queued(position: int, agents_online: int) -> str:
    if agents_online == 0:
        return QUEUED_NO_AGENTS
    return (
        f"A person from our team will be with you shortly. You are number {position} in the "
        "queue; you can keep writing here meanwhile."
    )


def vip_queued(agents_online: int) -> str:
    if agents_online == 0:
        return QUEUED_NO_AGENTS
    return "Thank you, a person from our team is coming to answer you right away."


def already_queued(position: int) -> str:
    return f"You are already in the queue (number {position}). A person will answer you here."


def already_with_agent(agent_name: str) -> str:
    return f"You are talking with {escape(agent_name)}; just write your message here."


def agent_joined(agent_name: str) -> str:
    return f"{escape(agent_name)} has joined the conversation and will answer you here."


# --- agents ---------------------------------------------------------------------------
AGENT_HELP = (
    "/online - start taking chats\n/offline - stop taking chats\n"
    "/queue - waiting chats by priority\n/next - take the highest-priority waiting chat\n"
    "/chats - your open chats (focus or close one)\n/close - close the current chat\n"
    "/help - this help\n\n"
    "Your messages go to the customer of the chat you reply to, else your focused chat, "
    "else your only open chat."
)
SUPERVISOR_HELP_SUFFIX = "\n/stats - queue and agent figures"
NOW_ONLINE = "You are online. New chats will be sent to you."
NOW_OFFLINE = "You are offline. You will not be paged for new chats."
QUEUE_EMPTY = "The queue is empty."
NO_OPEN_CHATS = "You have no open chat. Use /next or /queue to take one."
NOT_YOURS = "That chat is no longer yours, so the message was not sent."
CLAIM_BUTTON = "✋ Claim"
UNKNOWN_COMMAND = "I do not know that command."


def still_open_chats(n: int) -> str:
    return f"You still have {n} open chat(s): close them with /close, or they stay yours."


def ambiguous(n: int) -> str:
    return (
        f"You have {n} open chats, so I did not send that. Reply to one of the customer's "
        "messages, or pick the chat to focus:"
    )


def conv_label(conv: Conversation, customer: Customer) -> str:
    name = customer.name or ("guest" if customer.is_guest else customer.external_id or "?")
    return f"#{conv.id} · {conv.tier} · {name}"


def notification(conv: Conversation, customer: Customer, preview: str | None, manager: bool) -> str:
    head = f"🔔 <b>New chat {escape(conv_label(conv, customer))}</b>"
    if manager:
        head += "\n(your account customer)"
    if customer.is_guest:
        head += "\nunidentified guest"
    if preview:
        head += f"\n\n{escape(preview[:500])}"
    return head


def taken_by(conv: Conversation, customer: Customer, agent_name: str) -> str:
    return f"Chat {escape(conv_label(conv, customer))} was taken by {escape(agent_name)}."


def you_took(conv: Conversation, customer: Customer) -> str:
    label = escape(conv_label(conv, customer))
    return f"✅ You took chat <b>{label}</b>. The customer's messages follow."


def lost_claim(agent_name: str) -> str:
    return f"Already taken by {agent_name}."


def header(conv: Conversation, customer: Customer) -> str:
    return f"— {escape(conv_label(conv, customer))} —"


def closed_for_agent(conv: Conversation, customer: Customer) -> str:
    return f"Closed chat {escape(conv_label(conv, customer))}."


def chats_list(n: int) -> str:
    return f"Your open chats ({n}):" if n else NO_OPEN_CHATS


def queue_list(n_shown: int, n_total: int) -> str:
    more = f" (showing the first {n_shown})" if n_total > n_shown else ""
    return f"Waiting chats by priority: {n_total}{more}"


def focused(conv: Conversation, customer: Customer) -> str:
    return f"Focused on {escape(conv_label(conv, customer))}: your messages go there."


def stats(by_tier: dict[str, int], agents_online: int, open_chats: int) -> str:
    lines = ["<b>Queue</b>"]
    lines += [f"{tier}: {n}" for tier, n in by_tier.items()]
    lines.append(f"\nAgents online: {agents_online}\nChats with an agent: {open_chats}")
    return "\n".join(lines)
