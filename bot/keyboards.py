"""Inline and reply keyboards, and the callback data they carry."""

from __future__ import annotations

from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from pydantic import Field

from bot import texts
from routing.store.models import Conversation, Customer

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
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=accept_text, callback_data=OfferCb(id=offer_id, accept=True).pack()
                ),
                InlineKeyboardButton(
                    text=decline_text, callback_data=OfferCb(id=offer_id, accept=False).pack()
                ),
            ]
        ]
    )


def share_phone() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=texts.customer.share_phone_button(), request_contact=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def node_button(text: str, node_id: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=NodeCb(id=node_id).pack())


def human_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(text=texts.customer.human_button(), callback_data=HumanCb().pack())


def rows(
    buttons: list[InlineKeyboardButton], nav: list[InlineKeyboardButton]
) -> InlineKeyboardMarkup:
    """One button per row (labels can be long), the navigation row last."""
    grid = [[b] for b in buttons]
    if nav:
        grid.append(nav)
    return InlineKeyboardMarkup(inline_keyboard=grid)


def helped(entry_id: str) -> list[InlineKeyboardButton]:
    return [
        InlineKeyboardButton(
            text=texts.customer.helped_yes(), callback_data=HelpedCb(id=entry_id, yes=True).pack()
        ),
        InlineKeyboardButton(
            text=texts.customer.helped_no(), callback_data=HelpedCb(id=entry_id, yes=False).pack()
        ),
    ]


def claim(conv_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=texts.agent.claim_button(), callback_data=ClaimCb(conv=conv_id).pack()
                )
            ]
        ]
    )


def queue(items: list[tuple[Conversation, Customer]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=f"✋ {texts.agent.conv_label(c, cu)}",
                    callback_data=ClaimCb(conv=c.id).pack(),
                )
            ]
            for c, cu in items
        ]
    )


def chats(items: list[tuple[Conversation, Customer]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=f"🎯 {texts.agent.conv_label(c, cu)}",
                    callback_data=FocusCb(conv=c.id).pack(),
                ),
                InlineKeyboardButton(
                    text=texts.agent.close_button(), callback_data=CloseCb(conv=c.id).pack()
                ),
            ]
            for c, cu in items
        ]
    )


def close_choice(items: list[tuple[Conversation, Customer]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=texts.agent.close_chat_button(texts.agent.conv_label(c, cu)),
                    callback_data=CloseCb(conv=c.id).pack(),
                )
            ]
            for c, cu in items
        ]
    )
