"""Flood control for incoming updates: a per-user token bucket, checked before any handler.

A flooder's 500 messages must not become 500 replies (and 494 answers of 429 from Telegram):
each person may send ``BURST`` updates at once and ``PER_SECOND`` a second after that.
Messages, edited messages and callback presses count; other update kinds (a user blocking
the bot, ...) pass uncounted, since no handler replies to them. Over the limit the update
is dropped before its handler runs, and the person is told so ONCE per throttling episode,
in their language: a message gets one "you are sending messages too fast" reply, a
callback press an answer carrying that text. Later drops in the same episode cost no
Telegram call at all. An episode starts with the first dropped update and ends when the
bucket is full again, i.e. after the person has kept within the rate for ``BURST /
PER_SECOND`` seconds; a flooder who keeps flooding hears it once.

Who is exempt:

* registered agents (and supervisors): they talk to many customers at once;
* updates that are not a person's (no user, group chats: no customer record);
* **customers in a live chat** (a queued or assigned conversation: ``open_conversation``
  from :class:`bot.middlewares.DbSessionMiddleware`). Their messages are never dropped:
  what a customer writes to an agent is the conversation itself, and losing it (even with
  a notice) is worse than an extra outgoing call. The handler stores every such message in
  the transcript (and the durable per-chat delivery queue, which paces the outgoing copies
  and honours ``retry_after``), so a flood costs database rows, not 429s; a queued chat
  costs no outgoing call at all. Their messages still take tokens when there are any, and
  their callback presses and everything else are throttled like anyone's: only
  conversation content is let through.

The limits are constants, not policy: flood control protects the bot, not a business rule,
and no policy section is about incoming traffic. They are generous for a person typing
(a burst of 20, then two a second) and still keep a script from costing more than two
replies a second.

Memory does not grow with the number of users ever seen: buckets are kept in last-use order,
and one idle long enough to be full again is forgotten (it is then the same as no bucket);
a hard cap bounds the table under a flood of distinct users.

Registered as ``dp.update.outer_middleware`` right after ``DbSessionMiddleware`` (it needs
``agent``, ``customer`` and ``open_conversation``), so a dropped update never reaches the
locale middleware: the notice's language is chosen here, the way ``LocaleMiddleware`` does.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import TelegramObject, Update, User
from aiogram.utils.i18n import I18n

from bot import texts
from bot.i18n import LocaleMiddleware, make_i18n
from routing.policy.root import Policy

__all__ = ["BURST", "PER_SECOND", "ThrottleMiddleware", "TokenBuckets", "Verdict"]

log = logging.getLogger(__name__)

# Updates a person may send at once, and per second after that (see the module docstring).
# A person clicking through the menu quickly presses a dozen buttons in a few seconds; a
# flood is hundreds. These let the first through and stop the second.
BURST = 20
PER_SECOND = 2.0
# Buckets kept at most; past it the least recently used one is forgotten (forgiven).
MAX_BUCKETS = 100_000
# Update kinds a person produces by typing or pressing; only these are counted.
_COUNTED = frozenset({"message", "edited_message", "callback_query"})
# Of those, the ones that carry conversation content (never dropped in a live chat).
_CONTENT = frozenset({"message", "edited_message"})


class Verdict(Enum):
    ALLOW = "allow"  # run the handler
    NOTIFY = "notify"  # dropped; the first drop of an episode: tell the person
    DROP = "drop"  # dropped quietly: they were already told


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float
    throttled: bool = False  # in an episode: the notice went out


class TokenBuckets:
    """Per-key token buckets: ``burst`` tokens, refilled at ``rate`` a second.

    Pure bookkeeping on a caller-supplied ``now`` (monotonic seconds)."""

    def __init__(self, burst: float, rate: float, max_buckets: int = MAX_BUCKETS) -> None:
        if burst < 1 or rate <= 0 or max_buckets < 1:
            raise ValueError("burst must be >= 1, rate > 0 and max_buckets >= 1")
        self.burst = float(burst)
        self.rate = float(rate)
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._buckets

    def take(self, key: Hashable, now: float, *, always: bool = False) -> Verdict:
        """Count one update of ``key``. ``always``: it passes even over the limit (a live
        chat's message); it still takes a token when there is one."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            self._refill(bucket, now)
            self._buckets.move_to_end(key)
        if bucket.throttled and bucket.tokens >= self.burst:
            bucket.throttled = False  # quiet long enough: the episode is over
        self._evict(now)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return Verdict.ALLOW
        if always:
            return Verdict.ALLOW
        if bucket.throttled:
            return Verdict.DROP
        bucket.throttled = True
        return Verdict.NOTIFY

    def _refill(self, bucket: _Bucket, now: float) -> None:
        elapsed = max(0.0, now - bucket.stamp)
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.stamp = max(bucket.stamp, now)

    def _idle(self, bucket: _Bucket, now: float) -> bool:
        return bucket.tokens + max(0.0, now - bucket.stamp) * self.rate >= self.burst

    def _evict(self, now: float) -> None:
        """Forget buckets that are full again, oldest use first (O(1) amortised): a full
        bucket is the same as none. The one just touched is last, so it survives."""
        buckets = self._buckets
        while len(buckets) > 1:
            key, oldest = next(iter(buckets.items()))
            if len(buckets) <= self.max_buckets and not self._idle(oldest, now):
                break
            del buckets[key]


class ThrottleMiddleware(BaseMiddleware):
    """``dp.update.outer_middleware``: drops a person's updates over their rate (see the
    module docstring for who is exempt and what they are told)."""

    def __init__(
        self,
        i18n: I18n,
        *,
        burst: float = BURST,
        per_second: float = PER_SECOND,
        max_buckets: int = MAX_BUCKETS,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buckets = TokenBuckets(burst, per_second, max_buckets)
        self.now = now
        self.i18n = i18n
        self._locale = LocaleMiddleware(i18n)
        self.dropped = 0  # updates dropped since start (for tests and diagnostics)

    @classmethod
    def from_policy(cls, policy: Policy) -> ThrottleMiddleware:
        return cls(make_i18n(policy.selfservice.default_language))

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if (
            not isinstance(event, Update)
            or user is None
            or data.get("agent") is not None
            or data.get("customer") is None
            or event.event_type not in _COUNTED
        ):
            return await handler(event, data)
        live = data.get("open_conversation") is not None and event.event_type in _CONTENT
        verdict = self.buckets.take(user.id, self.now(), always=live)
        if verdict is Verdict.ALLOW:
            return await handler(event, data)
        self.dropped += 1
        if verdict is Verdict.NOTIFY:
            log.info("throttling user %s: over %g updates a second", user.id, self.buckets.rate)
            await self._notify(event, data)
        return None

    async def _notify(self, event: Update, data: dict[str, Any]) -> None:
        bot: Bot | None = data.get("bot")
        if bot is None:
            return
        locale = await self._locale.get_locale(event, data)
        with self.i18n.context(), self.i18n.use_locale(locale):
            text = texts.customer.too_fast()
        try:
            if event.callback_query is not None:
                await bot.answer_callback_query(event.callback_query.id, text)
            else:
                chat = data.get("event_chat")
                if chat is not None:
                    await bot.send_message(chat.id, text)
        except TelegramAPIError as exc:
            # Flood control on the notice itself, a blocked bot: nothing more to say.
            log.warning("throttle notice not sent: %s", " ".join(str(exc).split()))
