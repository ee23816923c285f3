"""Run the routers' synchronous filters on the event loop instead of a worker thread.

aiogram awaits a synchronous callable, a handler or a filter, through ``asyncio.to_thread``
(``CallableObject.call``), so that a slow synchronous handler cannot stall the loop. Ours
are all cheap checks (``F.text``, ``~F.text.startswith("/")``, an FSM state, a plain
function of the message), and the thread hand-off costs far more than the check: a
self-service text went through 14 of them, each a submit to the executor, a context copy, a
wake-up of the loop through its self-pipe and back (issue 19's profile; bench/RESULTS.md).
Here every such callable is called directly on the loop, with the same arguments and the
same result, once, after the routers are built.

Every handler of ours is ``async def``: a synchronous *handler* is refused, since it could be
the slow kind aiogram's thread is for (:func:`run_sync_filters_on_loop` raises).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.dispatcher.event.handler import CallableObject


def _on_loop(sync: Callable[..., Any]) -> Callable[..., Any]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        return sync(*args, **kwargs)

    return call


def _routers(dp: Dispatcher) -> Iterator[Router]:
    seen: set[int] = set()
    stack: list[Router] = [dp]
    while stack:
        router = stack.pop()
        if id(router) in seen:
            continue
        seen.add(id(router))
        yield router
        stack.extend(router.sub_routers)


def _callables(router: Router) -> Iterator[tuple[str, CallableObject, bool]]:
    """(where, object, is it a handler) for every handler and filter of ``router``."""
    for name, observer in router.observers.items():
        for f in observer._handler.filters or []:  # the observer-wide .filter(...) list
            yield f"{router.name}.{name} filter", f, False
        for handler in observer.handlers:
            where = f"{router.name}.{name} {getattr(handler.callback, '__qualname__', '?')}"
            yield where, handler, True
            for f in handler.filters or []:
                yield f"{where} filter", f, False


def run_sync_filters_on_loop(dp: Dispatcher) -> int:
    """Make every synchronous filter of ``dp``'s routers run on the loop; how many were.

    Idempotent (the routers are module singletons shared by every dispatcher of a process).
    """
    changed = 0
    for router in _routers(dp):
        for where, obj, is_handler in _callables(router):
            if obj.awaitable:
                continue
            if is_handler:
                raise TypeError(f"{where}: handlers must be async def (aiogram would run it "
                                "on a thread)")  # fmt: skip
            obj.callback = _on_loop(obj.callback)
            obj.awaitable = True
            changed += 1
    return changed


def sync_callables(dp: Dispatcher) -> list[str]:
    """Where a synchronous handler or filter is left (for tests: none after the pass)."""
    return [where for r in _routers(dp) for where, obj, _h in _callables(r) if not obj.awaitable]
