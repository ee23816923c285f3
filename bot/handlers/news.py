"""The customer's announcement switches: ``/stop_news`` and ``/start_news``.

One of the customers' feature routers (bot/handlers/__init__.py), apart from the survey
switches (``/stop_surveys``): a customer may want surveys and not announcements, or the
reverse. Opting out skips at once every announcement not yet handed to Telegram
(``surveys.outbox.set_opt_out`` with ``news=True``); the sweep checks the switch again just
before each send.
"""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.texts import news as texts
from routing.store.models import Customer
from surveys import outbox

router = Router(name="news")


@router.message(Command("stop_news"))
async def stop_news(message: Message, session: AsyncSession, customer: Customer) -> None:
    async with session.begin():
        await outbox.set_opt_out(session, customer.id, True, news=True)
    await message.answer(texts.stopped())


@router.message(Command("start_news"))
async def start_news(message: Message, session: AsyncSession, customer: Customer) -> None:
    async with session.begin():
        await outbox.set_opt_out(session, customer.id, False, news=True)
    await message.answer(texts.started())
