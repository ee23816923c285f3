"""Self-service keyboards are built once per policy, language and key (issue 19: building
them anew was about a tenth of a self-service answer's CPU), and never shown across policies
or languages."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.i18n import make_i18n
from bot.keyboards import Shared


class Owner:
    """Stands for a policy object: only its identity matters."""


def _markup(label: str) -> InlineKeyboardMarkup:
    button = InlineKeyboardButton(text=label, callback_data="n:x")
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def test_the_same_key_gets_the_same_markup_built_once() -> None:
    shared, owner, built = Shared(), Owner(), []

    def build() -> InlineKeyboardMarkup:
        built.append(1)
        return _markup("a")

    first = shared.get(owner, ("offer", "B", ("x",)), build)
    assert shared.get(owner, ("offer", "B", ("x",)), build) is first
    assert len(built) == 1
    assert shared.get(owner, ("offer", "A", ("x",)), build) is not first
    assert len(built) == 2


def test_another_policy_or_language_never_gets_this_ones_markup() -> None:
    shared, one, other = Shared(), Owner(), Owner()
    mine = shared.get(one, ("menu",), lambda: _markup("mine"))
    assert shared.get(other, ("menu",), lambda: _markup("theirs")) is not mine
    i18n = make_i18n()
    with i18n.context(), i18n.use_locale("zh_Hans"):
        assert shared.get(one, ("menu",), lambda: _markup("zh")) is not mine
    assert shared.get(one, ("menu",), lambda: _markup("again")) is mine


def test_a_dropped_policy_is_not_mistaken_for_a_new_one_at_the_same_address() -> None:
    # The entry keeps its owner alive, so no new object can take its id meanwhile.
    shared = Shared()
    mine = shared.get(Owner(), ("menu",), lambda: _markup("old"))
    for _ in range(100):
        assert shared.get(Owner(), ("menu",), lambda: _markup("new")) is not mine


def test_the_least_recently_used_are_dropped_past_the_size() -> None:
    shared, owner = Shared(size=3), Owner()
    first = shared.get(owner, (0,), lambda: _markup("0"))
    for i in range(1, 4):
        shared.get(owner, (i,), lambda: _markup("n"))
    assert shared.get(owner, (0,), lambda: _markup("0 again")) is not first
    kept = shared.get(owner, (3,), lambda: _markup("3 again"))
    assert shared.get(owner, (3,), lambda: _markup("no")) is kept
