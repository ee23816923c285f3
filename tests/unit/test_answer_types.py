"""aiogram parses every Bot API answer as a pydantic generic ``Response[T]``, which pydantic
caches only weakly: without a reference of ours, a garbage collection dropped it and the next
API call built the class again (about 1.5 ms of CPU each; bench/RESULTS.md, issue 19).
bot.app.pin_answer_types keeps one for every method's result type."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from aiogram.methods import AnswerCallbackQuery, CopyMessage, EditMessageText, SendMessage
from aiogram.methods.base import Response

from bot.app import pin_answer_types

ANSWER: Any = Response


def test_an_answer_type_nobody_keeps_is_dropped_by_a_collection() -> None:
    """The control: what pydantic does on its own."""
    built = weakref.ref(ANSWER[tuple[int, str, float]])
    gc.collect()
    assert built() is None


def test_pinned_answer_types_survive_collections() -> None:
    assert pin_answer_types() >= 30  # every method's result type, once
    methods: tuple[Any, ...] = (SendMessage, CopyMessage, EditMessageText, AnswerCallbackQuery)
    built = [weakref.ref(ANSWER[m.__returning__]) for m in methods]
    gc.collect()
    for method, ref in zip(methods, built, strict=True):
        assert ref() is not None, method.__name__
        assert ANSWER[method.__returning__] is ref()  # found, not built again
