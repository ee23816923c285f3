"""Inline and reply keyboards, and the callback data they carry.

Built with aiogram's keyboard builders; a button's callback data is packed from its
``CallbackData`` class, never written by hand (tests and old messages rely on the format).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Annotated, Any, Literal, TypeVar

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, ReplyKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder, ReplyKeyboardBuilder
from pydantic import Field

from bot import texts
from bot.i18n import current_locale
from bot.texts import care as care_texts
from routing.store.models import Conversation, Customer

_T = TypeVar("_T")

# A row id inside callback data. Anyone can send any callback data (it is not signed), and
# an integer past 64 bits made the database driver raise OverflowError, so the press was never
# answered: out of range, the data does not match and the "no longer active" answer follows.
RowId = Annotated[int, Field(ge=0, le=2**63 - 1)]
# Free-form ids (self-service nodes, FAQ entries): Telegram caps callback data at 64 bytes.
NodeId = Annotated[str, Field(min_length=1, max_length=64)]


class ClaimCb(CallbackData, prefix="claim"):
    conv: RowId


class FocusCb(CallbackData, prefix="focus"):
    conv: RowId


class CloseCb(CallbackData, prefix="close"):
    conv: RowId


class FaqCb(CallbackData, prefix="faq"):
    id: NodeId


class HumanCb(CallbackData, prefix="human"):
    pass


class MenuCb(CallbackData, prefix="menu"):
    pass


class NodeCb(CallbackData, prefix="ss"):
    """A self-service node (menu, FAQ entry or action) by id: at most 3 + 40 bytes."""

    id: NodeId


class HelpedCb(CallbackData, prefix="helped"):
    """The answer to "did this help?" about FAQ entry ``id``."""

    id: NodeId
    yes: bool


class OfferCb(CallbackData, prefix="offer"):
    """Offer mode: accept (or pass on) queue offer ``id``."""

    id: RowId
    accept: bool


def offer(offer_id: int, accept_text: str, decline_text: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=accept_text, callback_data=OfferCb(id=offer_id, accept=True))
    kb.button(text=decline_text, callback_data=OfferCb(id=offer_id, accept=False))
    return kb.as_markup()


def share_phone() -> ReplyKeyboardMarkup:
    kb = ReplyKeyboardBuilder()
    kb.button(text=texts.customer.share_phone_button(), request_contact=True)
    return kb.as_markup(resize_keyboard=True, one_time_keyboard=True)


class Shared:
    """Keyboards (and their texts) that depend only on the policy, the language and a few
    ids, built once and shared by every message that shows them.

    A self-service answer built its buttons anew for every customer text: five pydantic
    models, each validated and its callback data packed, about a tenth of the answer's CPU
    (issue 19). aiogram's types are frozen models, so one markup can go out any number of
    times. A key holds its policy object (``owner``), so a reloaded policy never finds the
    old one's keyboards; the least recently used are dropped past ``size``."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._built: OrderedDict[tuple[Hashable, ...], tuple[object, Any]] = OrderedDict()

    def get(self, owner: object, key: tuple[Hashable, ...], build: Callable[[], _T]) -> _T:
        # The texts' language (gettext's) is part of the key, as is the owner's identity:
        # the entry keeps the owner alive, so its id cannot be another object's meanwhile.
        full = (id(owner), current_locale(), *key)
        found = self._built.get(full)
        if found is not None and found[0] is owner:
            self._built.move_to_end(full)
            return found[1]  # type: ignore[no-any-return]
        value = build()
        self._built[full] = (owner, value)
        if len(self._built) > self.size:
            self._built.popitem(last=False)
        return value

    def clear(self) -> None:
        self._built.clear()


def node_button(text: str, node_id: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=NodeCb(id=node_id).pack())


def human_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(text=texts.customer.human_button(), callback_data=HumanCb().pack())


def rows(
    buttons: Sequence[InlineKeyboardButton], nav: Sequence[InlineKeyboardButton] = ()
) -> InlineKeyboardMarkup:
    """One button per row (labels can be long), the navigation row last.

    Built as the markup itself, not through ``InlineKeyboardBuilder``: its ``as_markup``
    deep-copies every button (pydantic models), which was about 7% of a self-service
    answer's CPU (bench/RESULTS.md, issue 19); the buttons here are fresh and not shared."""
    grid = [[button] for button in buttons]
    if nav:
        grid.append(list(nav))
    return InlineKeyboardMarkup(inline_keyboard=grid)


def answer(
    entry_id: str, link: str | None, nav: Sequence[InlineKeyboardButton]
) -> InlineKeyboardMarkup:
    """Under an FAQ answer: its link, "did this help?" (yes / no), then the navigation row."""
    kb = InlineKeyboardBuilder()
    if link:
        kb.row(InlineKeyboardButton(text=texts.customer.link_button(), url=link))
    kb.row(
        InlineKeyboardButton(
            text=texts.customer.helped_yes(), callback_data=HelpedCb(id=entry_id, yes=True).pack()
        ),
        InlineKeyboardButton(
            text=texts.customer.helped_no(), callback_data=HelpedCb(id=entry_id, yes=False).pack()
        ),
    )
    if nav:
        kb.row(*nav)
    return kb.as_markup()


def claim(conv_id: int) -> InlineKeyboardMarkup:
    # One button, built as the markup itself: a VIP's page builds one per agent paged, and
    # the builder's generic checks cost more than the button (issue 19).
    button = InlineKeyboardButton(
        text=texts.agent.claim_button(), callback_data=ClaimCb(conv=conv_id).pack()
    )
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def queue(items: list[tuple[Conversation, Customer]]) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for c, cu in items:
        kb.button(text=f"✋ {texts.agent.conv_label(c, cu)}", callback_data=ClaimCb(conv=c.id))
    kb.adjust(1)
    return kb.as_markup()


def chats(items: list[tuple[Conversation, Customer]]) -> InlineKeyboardMarkup:
    """A row per chat: focus it, or close it."""
    kb = InlineKeyboardBuilder()
    for c, cu in items:
        kb.button(text=f"🎯 {texts.agent.conv_label(c, cu)}", callback_data=FocusCb(conv=c.id))
        kb.button(text=texts.agent.close_button(), callback_data=CloseCb(conv=c.id))
    kb.adjust(2)
    return kb.as_markup()


def close_choice(items: list[tuple[Conversation, Customer]]) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for c, cu in items:
        kb.button(
            text=texts.agent.close_chat_button(texts.agent.conv_label(c, cu)),
            callback_data=CloseCb(conv=c.id),
        )
    kb.adjust(1)
    return kb.as_markup()


# --- complaints ----------------------------------------------------------------------------


class ComplaintCb(CallbackData, prefix="cpl"):
    """Start filing a complaint (the self-service "did not help" path)."""


class ComplaintCategoryCb(CallbackData, prefix="cplcat"):
    """The customer's pick of ``[complaints]`` category ``key`` (at most 7 + 40 bytes)."""

    key: NodeId


class ComplaintCancelCb(CallbackData, prefix="cplx"):
    pass


class FollowUpCb(CallbackData, prefix="cplfu"):
    """The answer to "resolved to your satisfaction?" on follow-up survey ``id``."""

    id: RowId
    yes: bool


class FollowUpScoreCb(CallbackData, prefix="cplrt"):
    """The 1-5 rating of a complaint's handling, on follow-up survey ``id``."""

    id: RowId
    score: Annotated[int, Field(ge=1, le=5)]


def complaint_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=texts.complaint.complaint_button(), callback_data=ComplaintCb().pack()
    )


def complaint_categories(choices: Sequence[tuple[str, str]]) -> InlineKeyboardMarkup:
    """One button per (key, label), then Cancel."""
    kb = InlineKeyboardBuilder()
    for key, label in choices:
        kb.row(InlineKeyboardButton(text=label, callback_data=ComplaintCategoryCb(key=key).pack()))
    kb.row(
        InlineKeyboardButton(
            text=texts.complaint.cancel_button(), callback_data=ComplaintCancelCb().pack()
        )
    )
    return kb.as_markup()


def follow_up_question(survey_id: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=texts.complaint.yes_button(), callback_data=FollowUpCb(id=survey_id, yes=True))
    kb.button(text=texts.complaint.no_button(), callback_data=FollowUpCb(id=survey_id, yes=False))
    return kb.as_markup()


def follow_up_rating(survey_id: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for n in range(1, 6):
        kb.button(text=str(n), callback_data=FollowUpScoreCb(id=survey_id, score=n))
    return kb.as_markup()


# --- care tasks ----------------------------------------------------------------------------


CareAction = Literal["start", "done", "snooze"]


class CareCb(CallbackData, prefix="care"):
    """*Start chat*, *Done* or *Snooze* on care task ``id``."""

    action: CareAction
    id: RowId


def care_task(task_id: int, *, started: bool = False) -> InlineKeyboardMarkup:
    """Under a care reminder: Start chat, Done, Snooze (a started task: Done alone)."""
    kb = InlineKeyboardBuilder()
    if not started:
        kb.button(text=care_texts.start_button(), callback_data=_care("start", task_id))
    kb.button(text=care_texts.done_button(), callback_data=_care("done", task_id))
    if not started:
        kb.button(text=care_texts.snooze_button(), callback_data=_care("snooze", task_id))
    return kb.as_markup()


def care_agenda(items: Sequence[tuple[int, bool]]) -> InlineKeyboardMarkup:
    """``/care``: a row per (task id, started): 💬 #id, ✅ #id, 💤 #id."""
    kb = InlineKeyboardBuilder()
    for task_id, started in items:
        actions: list[tuple[str, CareAction]] = [("✅", "done")]
        if not started:
            actions = [("💬", "start"), *actions, ("💤", "snooze")]
        kb.row(
            *(
                InlineKeyboardButton(text=f"{icon} #{task_id}", callback_data=_care(a, task_id))
                for icon, a in actions
            )
        )
    return kb.as_markup()


def _care(action: CareAction, task_id: int) -> str:
    return CareCb(action=action, id=task_id).pack()
