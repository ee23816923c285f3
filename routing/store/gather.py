"""Reads of concurrent callers that go to the database together: one statement for many.

Every update's first statement is the same lookup (routing/store/update_lookup.py), asked by
up to ``bot/intake.CONCURRENCY`` updates at once. On PostgreSQL each was a round trip of its
own: a socket write and a wake-up of a server process per update, and the server's fixed
cost per statement (parse, bind, executor start), on the same two cores as the bot. Asked
together, the lookups of the updates that are waiting are one statement whose rows answer
each of them (issue 19).

:class:`Gather` is the batching, the way ``inbox.DoneMarks`` batches the done marks: one
statement in flight at a time; the asks that come while it is are sent together in the
next, so under load the batches grow with the round trip, and an ask that comes alone waits
one turn of the loop at most. Each caller gets its own answer, or the batch's error.

An ask is answered by a statement that begins when the ask was made or after, never by one
that was already running: what the caller wrote before asking is seen, as when it asked
alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


@dataclass(frozen=True)
class Failed:
    """An answer that is an error: only the ask it answers fails (a write the database
    refused for one caller, say), not the others of its batch."""

    error: Exception


@dataclass
class _Ask(Generic[K, R]):
    key: K
    answer: asyncio.Future[R]


class Gather(Generic[K, R]):
    """``ask(key)`` answered by ``run(keys)``, which answers many keys at once, in order
    (an answer that is :class:`Failed` raises its error in its caller)."""

    def __init__(self, run: Callable[[Sequence[K]], Awaitable[Sequence[R | Failed]]]) -> None:
        self._run = run
        self._asks: list[_Ask[K, R]] = []
        self._runner: asyncio.Task[None] | None = None

    async def ask(self, key: K) -> R:
        loop = asyncio.get_running_loop()
        one: _Ask[K, R] = _Ask(key, loop.create_future())
        self._asks.append(one)
        runner = self._runner
        if runner is None or runner.done() or runner.get_loop() is not loop:
            # Runs on the loop's next turn: asks made until then go in this batch.
            self._runner = loop.create_task(self._run_all())
        # Shielded: a caller cancelled while waiting does not cancel the others' answers.
        return await asyncio.shield(one.answer)

    async def _run_all(self) -> None:
        # Until no ask waits: those made while a statement ran go in the next (nothing
        # awaits between this check and the task's end, so none is missed).
        while self._asks:
            batch, self._asks = self._asks, []
            try:
                answers = await self._run([a.key for a in batch])
                if len(answers) != len(batch):
                    raise RuntimeError(f"{len(answers)} answers for {len(batch)} asks")
            except BaseException as error:
                _fail(batch, error)
                if not isinstance(error, Exception):
                    # Cancelled (shutdown): the asks made meanwhile fail too, so none of
                    # their callers waits for a runner that is gone.
                    _fail(self._asks, error)
                    self._asks = []
                    raise
                continue
            for one, answer in zip(batch, answers, strict=True):
                if one.answer.done():
                    continue
                if isinstance(answer, Failed):
                    one.answer.set_exception(answer.error)
                else:
                    one.answer.set_result(answer)


def _fail(batch: Sequence[_Ask[K, R]], error: BaseException) -> None:
    for one in batch:
        if not one.answer.done():
            if isinstance(error, Exception):
                one.answer.set_exception(error)
            else:
                one.answer.cancel()
