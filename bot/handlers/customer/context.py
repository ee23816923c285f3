"""What a customer handler works with, gathered once per update: :class:`CustomerContext`."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.fsm.context import FSMContext
from aiogram.types import Chat, InlineKeyboardMarkup, Message, TelegramObject, User
from sqlalchemy.ext.asyncio import AsyncSession

from bot.desk import Desk
from routing.clock import Clock
from routing.policy.root import Policy
from routing.policy.selfservice import SelfServicePolicy
from routing.selfservice.knowledge import KnowledgeIndex
from routing.store.models import Customer
from routing.store.update_lookup import Lookup


@dataclass(frozen=True)
class CustomerContext:
    """One customer update and everything answering it needs, as handlers' ``ctx``.

    Built by :class:`CustomerContextMiddleware` from what the outer middlewares and the
    dispatcher's workflow data provide, so the helpers take one argument instead of eight.
    """

    bot: Bot
    # The customer's private chat (for a button press: the chat of the message it is under).
    chat_id: int
    session: AsyncSession
    customer: Customer
    policy: Policy
    desk: Desk
    clock: Clock
    knowledge: KnowledgeIndex
    locale: str
    state: FSMContext
    # What the update's lookup read (routing/store/update_lookup.py), about the sender as
    # the update began; None where no lookup ran.
    lookup: Lookup | None = None

    @property
    def selfservice(self) -> SelfServicePolicy:
        return self.policy.selfservice

    @property
    def idle_timeout(self) -> timedelta:
        """After this long without a step, a self-service session has ended."""
        return timedelta(minutes=self.policy.selfservice.session_minutes)

    def about(self, customer: Customer) -> CustomerContext:
        """The same update, about ``customer`` (who the sender just became by linking)."""
        return dataclasses.replace(self, customer=customer)

    async def send(self, text: str, markup: InlineKeyboardMarkup | None = None) -> Message:
        return await self.bot.send_message(self.chat_id, text, reply_markup=markup)


class CustomerContextMiddleware(BaseMiddleware):
    """Inner middleware of the customers' router (messages and button presses): puts
    ``ctx`` in the handler data, after the filters chose a handler."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        chat: Chat | None = data.get("event_chat")
        user: User | None = data.get("event_from_user")
        # A private chat's id is its user's: the fallback for a press under a message
        # Telegram no longer gives (handlers check query.message where it matters).
        chat_id = chat.id if chat is not None else user.id if user is not None else 0
        data["ctx"] = CustomerContext(
            bot=data["bot"],
            chat_id=chat_id,
            session=data["session"],
            customer=data["customer"],
            policy=data["policy"],
            desk=data["desk"],
            clock=data["clock"],
            knowledge=data["knowledge"],
            locale=data["locale"],
            state=data["state"],
            lookup=data.get("lookup"),
        )
        return await handler(event, data)
