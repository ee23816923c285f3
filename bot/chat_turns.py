"""Taking turns to send into one Telegram chat, in this process: after a 429 from a chat its
sends are paced, so the conversations that share it (an agent's thirty chats) wait their turn
instead of all retrying into new 429s. Used by the deliverer (bot/delivery.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

# Telegram's limit is about one message a second into one chat. After a 429 from a chat,
# sends into it are paced at this interval for PACED_SECONDS, so the conversations that
# share it (an agent's thirty chats) take turns instead of all retrying into new 429s.
PACE_SECONDS = 1.0
PACED_SECONDS = 60.0
# A send waits its chat's turn in line at most this long holding its claim (a lease of
# LEASE_SECONDS); longer, the row is handed back and the conversation looks again later.
MAX_TURN_WAIT = 2.0


class ChatTurns:
    """Whose turn it is to send into each Telegram chat, in this process (monotonic time)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.free_at: dict[int, float] = {}
        self.paced_until: dict[int, float] = {}
        self.locks: dict[int, asyncio.Lock] = {}
        self.waiting: dict[int, int] = {}

    def wait(self, chat_id: int) -> float:
        """Seconds until ``chat_id`` may take another message (0: now)."""
        return max(self.free_at.get(chat_id, 0.0) - self.clock(), 0.0)

    def busy(self, chat_id: int) -> bool:
        return self.waiting.get(chat_id, 0) > 0

    def queue_wait(self, chat_id: int) -> float:
        """A fair guess of when a conversation that found the chat busy should look again:
        after the sends ahead of it (a pace each if the chat is paced, else a moment)."""
        paced = self.paced_until.get(chat_id, 0.0) > self.clock()
        each = PACE_SECONDS if paced else 0.1
        return self.wait(chat_id) + each * max(self.waiting.get(chat_id, 0), 1)

    @contextlib.asynccontextmanager
    async def turn(self, chat_id: int) -> Any:
        lock = self.locks.setdefault(chat_id, asyncio.Lock())
        self.waiting[chat_id] = self.waiting.get(chat_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self.waiting[chat_id] -= 1
            if not self.waiting[chat_id]:
                del self.waiting[chat_id]
                self.locks.pop(chat_id, None)
                now = self.clock()
                # Forget chats that are free again (memory stays bounded by live chats).
                if self.free_at.get(chat_id, 0.0) <= now:
                    self.free_at.pop(chat_id, None)
                if self.paced_until.get(chat_id, 0.0) <= now:
                    self.paced_until.pop(chat_id, None)

    def sent(self, chat_id: int) -> None:
        now = self.clock()
        if self.paced_until.get(chat_id, 0.0) > now:
            self.free_at[chat_id] = now + PACE_SECONDS

    def limited(self, chat_id: int, retry_after: float) -> None:
        now = self.clock()
        self.free_at[chat_id] = max(self.free_at.get(chat_id, 0.0), now + retry_after)
        self.paced_until[chat_id] = now + PACED_SECONDS
