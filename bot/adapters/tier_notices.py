"""``routing.scoring.tier_notices.TierNotifier`` over aiogram: plain-text messages from the bot."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError

log = logging.getLogger(__name__)


class BotTierNotifier:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send(self, telegram_id: int, text: str) -> bool:
        try:
            # Plain text: names come from the CRM and must not be read as HTML.
            await self.bot.send_message(telegram_id, text, parse_mode=None)
        except TelegramAPIError as exc:
            log.warning("tier notice to %s not delivered: %s", telegram_id, exc)
            return False
        return True
