"""A new chat's notice names the customer's language in the reader's language; Babel is asked
once per tag and reader, not on every page to every agent (issue 19)."""

from __future__ import annotations

import pytest
from babel import Locale

from bot.texts import agent


def test_named_in_the_readers_language_and_asked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    agent._language_name.cache_clear()
    parsed: list[str] = []
    real = Locale.parse

    def counting(identifier: object, *a: object, **kw: object) -> Locale:
        parsed.append(str(identifier))
        return real(identifier, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Locale, "parse", counting)
    monkeypatch.setattr(agent, "current_locale", lambda: "en")
    assert agent.language_name("pt-BR") == "Portuguese (Brazil) (pt-BR)"
    assert agent.language_name("pt-BR") == "Portuguese (Brazil) (pt-BR)"
    monkeypatch.setattr(agent, "current_locale", lambda: "de")
    assert agent.language_name("pt-BR") == "Portugiesisch (Brasilien) (pt-BR)"
    assert parsed.count("pt_BR") == 2  # once per reader
    assert agent.language_name("not a tag") == "not a tag"
    assert agent.language_name(None) is None and agent.language_name("") is None
