"""What crosses the push sender's edges: a :class:`Push` in, a :class:`Result` out, and the
:class:`Transport` Protocol in between with the error types it raises.

:class:`surveys.push.Sender` knows nothing of Telegram's client library. A transport
(``bot/adapters/survey_transport.py`` for aiogram; fakes in the tests) sends one push and
either returns (the response, e.g. the Telegram message id, becomes
:attr:`Result.response`) or raises one of the errors below, which decide what the sender does
next: :class:`RetryAfter` pauses all sending, :class:`Unreachable` gives up on the chat,
:class:`TransientError` retries with backoff, :class:`PermanentError` fails the push. Each
push ends as one :class:`Result` with its :class:`Outcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

__all__ = [
    "Outcome",
    "PermanentError",
    "Push",
    "Result",
    "RetryAfter",
    "TransientError",
    "Transport",
    "Unreachable",
]


@dataclass(frozen=True)
class Push:
    """One outgoing message. ``key`` identifies its outbox row; ``payload`` is for the
    transport (e.g. the text, or what to render)."""

    key: str | int
    chat_id: int
    payload: Any


class Transport(Protocol):
    async def send(self, push: Push) -> object:
        """Send one push; the return value is reported as :attr:`Result.response`."""
        ...


class RetryAfter(Exception):
    """Flood control: nothing may be sent for ``seconds``."""

    def __init__(self, seconds: float, reason: str | None = None) -> None:
        super().__init__(reason or f"retry after {seconds:g}s")
        self.seconds = float(seconds)


class Unreachable(Exception):
    """The customer blocked the bot, was deactivated, or the chat does not exist."""


class TransientError(Exception):
    """May pass on a later attempt: network trouble, 5xx, odd 4xx."""


class PermanentError(Exception):
    """Will never pass for this push (e.g. a 400 about the message itself)."""


class Outcome(StrEnum):
    SENT = "sent"
    UNREACHABLE = "unreachable"
    FAILED = "failed"
    # Transient failures (5xx, network, 429) for the whole retry_window: not sent in this
    # run, but not a verdict on the push either; the caller may try it again later.
    DEFERRED = "deferred"


@dataclass
class Result:
    push: Push
    outcome: Outcome
    attempts: int  # transport calls made for this push, 429-answered ones included
    reason: str | None = None
    sent_at: float | None = None  # the sender's clock when the successful call returned
    # What the transport's send returned on success (e.g. the Telegram message id): the
    # proof of delivery an outbox records with the row.
    response: Any = None
