"""Inline and reply keyboards, and the callback data they carry."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)

from bot import texts
from routing.models import Conversation, Customer
from routing.policy import Policy


class ClaimCb(CallbackData, prefix="claim"):
    conv: int


class FocusCb(CallbackData, prefix="focus"):
    conv: int


class CloseCb(CallbackData, prefix="close"):
    conv: int


class FaqCb(CallbackData, prefix="faq"):
    id: str


class HumanCb(CallbackData, prefix="human"):
    pass


class MenuCb(CallbackData, prefix="menu"):
    pass


def share_phone() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=texts.SHARE_PHONE_BUTTON, request_contact=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def menu(policy: Policy) -> InlineKeyboardMarkup:
    rows = [
        [InlineKeyboardButton(text=f.question, callback_data=FaqCb(id=f.id).pack())]
        for f in policy.selfservice.faq
    ]
    rows.append([InlineKeyboardButton(text=texts.HUMAN_BUTTON, callback_data=HumanCb().pack())])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def after_answer() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=texts.BACK_BUTTON, callback_data=MenuCb().pack()),
                InlineKeyboardButton(text=texts.HUMAN_BUTTON, callback_data=HumanCb().pack()),
            ]
        ]
    )


def claim(conv_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=texts.CLAIM_BUTTON, callback_data=ClaimCb(conv=conv_id).pack()
                )
            ]
        ]
    )


def queue(items: list[tuple[Conversation, Customer]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=f"✋ {texts.conv_label(c, cu)}", callback_data=ClaimCb(conv=c.id).pack()
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
                    text=f"🎯 {texts.conv_label(c, cu)}", callback_data=FocusCb(conv=c.id).pack()
                ),
                InlineKeyboardButton(text="Close", callback_data=CloseCb(conv=c.id).pack()),
            ]
            for c, cu in items
        ]
    )


def close_choice(items: list[tuple[Conversation, Customer]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=f"Close {texts.conv_label(c, cu)}", callback_data=CloseCb(conv=c.id).pack()
                )
            ]
            for c, cu in items
        ]
    )
