"""Catalogs: complete in Simplified Chinese, compiled; the locale chosen per update."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram.types import User

from bot import i18n, texts
from bot.i18n import LocaleMiddleware, choose_locale, make_i18n
from tools import i18n as catalogs
from tools.i18n import FIX_HINT


def test_every_source_string_has_a_chinese_translation_and_the_mo_files_are_current() -> None:
    problems = catalogs.problems()
    assert not problems, (
        f"{len(problems)} catalog problem(s):\n" + "\n".join(problems) + (f"\nTo fix: {FIX_HINT}.")
    )


def test_extraction_finds_strings_across_bot() -> None:
    found = {m.id: m.locations for m in catalogs.extract() if m.id}
    assert "🙋 Talk to a person" in found  # an _() call in bot/texts/customer.py
    assert "Close {label}" in found  # a text with a placeholder, in bot/texts/agent.py
    assert "Identify yourself" in found  # the command menu (bot/app.py shows it)
    assert {path for path, _line in found["Close {label}"]} == {"bot/texts/agent.py"}
    assert "help_text" not in found  # names are not messages


@pytest.mark.parametrize("audience", ["customer", "agent", "supervisor", "survey"])
def test_every_text_is_a_function_translated_when_called(audience: str) -> None:
    """bot/texts/ has one convention: each public name is a function calling _() when
    called, so nothing is translated at import time, outside any update."""
    module = getattr(texts, audience)
    public = [n for n in vars(module) if not n.startswith("_")]
    assert len(public) >= 10
    for name in public:
        value = getattr(module, name)
        if name == "annotations" or inspect.ismodule(value) or inspect.isclass(value):
            continue  # imports (Customer, math, ...) are no texts
        assert inspect.isfunction(value), f"bot.texts.{audience}.{name} is not a function"


@pytest.mark.parametrize(
    ("record", "guest", "telegram", "expected"),
    [
        ("zh-CN", False, "en", "zh_Hans"),  # the CRM record wins for customers
        ("en", False, "zh", "en"),
        (None, False, "zh-Hans", "zh_Hans"),  # else Telegram's language_code
        ("en", True, "zh-CN", "zh_Hans"),  # a guest follows Telegram's current setting
        ("de", False, "fr", "en"),  # else the default
        (None, True, None, "en"),
    ],
)
def test_locale_choice(
    record: str | None, guest: bool, telegram: str | None, expected: str
) -> None:
    got = choose_locale(
        record_language=record,
        is_guest=guest,
        telegram_language=telegram,
        available=("en", "zh_Hans"),
        default="en",
    )
    assert got == expected


async def test_middleware_translates_inside_the_handler() -> None:
    mw = LocaleMiddleware(make_i18n("en"))
    seen: list[str] = []

    async def handler(event: Any, data: dict[str, Any]) -> None:
        seen.append(texts.customer.human_button())
        seen.append(data["locale"])

    user = User(id=1, is_bot=False, first_name="Z", language_code="zh-CN")
    customer = SimpleNamespace(language=None, is_guest=True)
    await mw(handler, SimpleNamespace(), {"event_from_user": user, "customer": customer})  # type: ignore[arg-type]
    assert seen == ["🙋 联系人工客服", "zh_Hans"]
    # Agents get the desk's default language whatever their Telegram setting.
    seen.clear()
    agent_data = {"event_from_user": user, "agent": object(), "customer": None}
    await mw(handler, SimpleNamespace(), agent_data)  # type: ignore[arg-type]
    assert seen == ["🙋 Talk to a person", "en"]
    # Outside any update: English source text, no crash.
    assert texts.customer.human_button() == "🙋 Talk to a person"


def test_speaking_a_customers_language_outside_an_update() -> None:
    with i18n.for_customer(SimpleNamespace(language="zh")):
        assert texts.customer.conversation_closed().startswith("本次会话已结束")
    assert texts.customer.conversation_closed().startswith("This conversation")


def test_speaking_normalises_a_raw_language_tag() -> None:
    with i18n.speaking("zh-CN"):
        assert texts.customer.human_button() == "🙋 联系人工客服"
    with i18n.speaking("de-AT"):  # no German catalog: the default language
        assert texts.customer.human_button() == "🙋 Talk to a person"


def test_a_catalog_compiled_by_another_babel_release_counts_as_current() -> None:
    """The .mo header records Babel's version and the date: a fresh install with a newer Babel
    must not make the committed catalogs look stale. Content still counts."""
    import io

    from babel.messages.mofile import read_mo, write_mo

    current = catalogs.compiled("zh_Hans")
    catalog = read_mo(io.BytesIO(current))
    catalog.version = "other"
    catalog._set_mime_headers([("Generated-By", "Babel 99.0.0"), ("Project-Id-Version", "x")])
    other_header = io.BytesIO()
    write_mo(other_header, catalog)
    assert other_header.getvalue() != current
    assert catalogs.mo_content(other_header.getvalue()) == catalogs.mo_content(current)

    changed = read_mo(io.BytesIO(current))
    first = next(m for m in changed if m.id)
    first.string = "something else"
    edited = io.BytesIO()
    write_mo(edited, changed)
    assert catalogs.mo_content(edited.getvalue()) != catalogs.mo_content(current)
