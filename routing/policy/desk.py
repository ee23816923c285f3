"""The ``[desk]`` section: where agents work.

``mode = "private"`` (the default): each agent talks to the bot in a private chat.
``mode = "topics"``: a staff forum supergroup (``group_id``) where every customer has one
topic; the bot must be an admin there allowed to manage topics (checked at start-up).

In both modes: ``timezone`` (the times agents read in transcripts) and ``[[desk.canned]]``,
the canned replies agents send with ``/r KEY`` or pick in inline mode, each a text per
language with placeholders from a fixed set (:data:`PLACEHOLDERS`). The default language
(the first of ``selfservice.languages``) is cross-checked in ``routing.policy.root``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field, field_validator, model_validator

from routing.policy.base import Strict
from routing.policy.check import Problem, check_zone, raise_problems
from routing.policy.selfservice_parts import LocalText, normalise_language

# What a canned reply may name; the bot fills them from the customer's record (name, tier,
# account manager) and their newest order. Anything else would fail, or leak, at send time.
PLACEHOLDERS = ("name", "tier", "manager", "last_order")

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,24}$")


def placeholder_problem(text: str) -> str | None:
    """Why ``text`` is not a valid canned text (an unknown or malformed placeholder), or None.
    ``{{`` and ``}}`` are literal braces."""
    allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError:
        return "an unmatched { or }: write {{ and }} for a literal brace"
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            return f"unknown placeholder {{{field}}} (placeholders: {allowed})"
        if spec or conversion:
            return f"{{{field}}} takes no format or conversion: write {{{field}}}"
    return None


class CannedReply(Strict):
    # What agents type: ``/r KEY`` (any case). Unique within [[desk.canned]].
    key: str
    # One string for every language, or a table language -> text; a table needs the default
    # language (the first of selfservice.languages).
    text: LocalText

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _KEY.match(value):
            raise ValueError(
                f'"{value}": a key is 1-24 letters, digits, _ or - (agents type /r KEY)'
            )
        return value

    @model_validator(mode="after")
    def _placeholders(self) -> CannedReply:
        texts = {"": self.text} if isinstance(self.text, str) else {
            f" ({lang})": t for lang, t in self.text.items()
        }  # fmt: skip
        found: list[Problem] = []
        for where, text in texts.items():
            if not text.strip():
                found.append((("text",), f'"{self.key}"{where}: an empty text'))
            elif (problem := placeholder_problem(text)) is not None:
                found.append((("text",), f'"{self.key}"{where}: {problem}'))
        raise_problems("CannedReply", found)
        return self

    @property
    def languages(self) -> tuple[str, ...]:
        return () if isinstance(self.text, str) else tuple(self.text)

    def text_for(self, language: str | None, default_language: str) -> str:
        """The text in ``language`` (any tag: ``zh-CN`` finds ``zh_Hans``), else the default
        language's."""
        if isinstance(self.text, str):
            return self.text
        found = normalise_language(language, self.text) if language else None
        if found is None:
            found = default_language if default_language in self.text else None
        return self.text[found] if found else next(iter(self.text.values()))

    def fill(self, language: str | None, default_language: str, values: Mapping[str, str]) -> str:
        """The text with its placeholders replaced (every name in :data:`PLACEHOLDERS` must
        be in ``values``)."""
        return self.text_for(language, default_language).format_map(dict(values))

    def used(self, language: str | None, default_language: str) -> tuple[str, ...]:
        """The placeholders the text in ``language`` names."""
        text = self.text_for(language, default_language)
        return tuple(f for _, f, _, _ in string.Formatter().parse(text) if f)


class DeskPolicy(Strict):
    mode: Literal["private", "topics"] = "private"
    # The staff supergroup's id (a negative number, -100...), required in topics mode.
    group_id: int | None = Field(default=None, lt=0)
    # Topics mode: the topic holding the queue view (its message_thread_id); None: General.
    queue_topic_id: int | None = Field(default=None, gt=0)
    # The time zone of the times agents read (the labelled transcript of a transfer).
    timezone: str = "UTC"
    # Canned replies: /r KEY, or picked in inline mode (@bot + words).
    canned: tuple[CannedReply, ...] = Field(default_factory=lambda: _default_canned())

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @model_validator(mode="after")
    def _group_for_topics(self) -> DeskPolicy:
        if self.mode == "topics" and self.group_id is None:
            raise ValueError(
                'mode = "topics" needs group_id: the staff forum supergroup\'s id (-100...)'
            )
        return self

    def canned_problems(self, languages: Sequence[str] | None) -> list[Problem]:
        """Duplicate keys; and, given ``selfservice.languages`` (None when that section is
        invalid), texts given per language without the default language (the first), or
        naming one the bot does not speak. One problem per line, naming the entry."""
        if "canned" not in self.model_fields_set:
            return []  # the shipped replies, in the shipped languages
        found: list[Problem] = []
        first: dict[str, int] = {}
        for i, c in enumerate(self.canned):
            low = c.key.casefold()
            if low in first:
                found.append(
                    (
                        ("canned", i, "key"),
                        f'"{c.key}" again: keys must be unique, in any case '
                        f"(#{first[low] + 1} has it)",
                    )
                )
            first.setdefault(low, i)
            if languages is None or isinstance(c.text, str):
                continue
            if languages and languages[0] not in c.text:
                found.append(
                    (
                        ("canned", i, "text"),
                        f'"{c.key}": no text in the default language {languages[0]} '
                        "(the first of selfservice.languages)",
                    )
                )
            extra = sorted(set(c.text) - set(languages))
            if extra:
                found.append(
                    (
                        ("canned", i, "text"),
                        f'"{c.key}": language {", ".join(extra)} is not in selfservice.languages',
                    )
                )
        return found

    def reply(self, key: str) -> CannedReply | None:
        """The canned reply ``key`` names (any case)."""
        low = key.casefold()
        return next((c for c in self.canned if c.key.casefold() == low), None)

    @property
    def topics(self) -> bool:
        return self.mode == "topics"


def _default_canned() -> tuple[CannedReply, ...]:
    def reply(key: str, en: str, zh: str) -> CannedReply:
        return CannedReply(key=key, text={"en": en, "zh_Hans": zh})

    return (
        reply(
            "hello",
            "Hello {name}, thank you for waiting. How can I help?",
            "{name}您好，感谢您的耐心等待。请问有什么可以帮您？",
        ),
        reply(
            "order",
            "I am looking at your order {last_order} now; one moment please.",
            "我正在查看您的订单 {last_order}，请稍候。",
        ),
        reply(
            "manager",
            "Your account manager {manager} will follow up with you personally.",
            "您的客户经理 {manager} 会亲自跟进。",
        ),
        reply(
            "bye",
            "Is there anything else I can do for you?",
            "还有什么可以帮您的吗？",
        ),
    )
