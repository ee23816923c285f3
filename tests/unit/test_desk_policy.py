"""The [desk] section: canned replies (keys, languages, placeholders) and the desk's time
zone, each problem one line naming the entry; filling a reply in the customer's language."""

from __future__ import annotations

from typing import Any

import pytest

from routing.policy.desk import PLACEHOLDERS, CannedReply, placeholder_problem
from routing.policy.root import Policy, PolicyError, parse_policy


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        parse_policy(data, "p.toml")
    return list(exc.value.problems)


def test_the_defaults_ship_replies_in_both_languages() -> None:
    desk = Policy().desk
    assert desk.mode == "private" and desk.timezone == "UTC"
    assert [c.key for c in desk.canned] == ["hello", "order", "manager", "bye"]
    assert all(set(c.languages) == {"en", "zh_Hans"} for c in desk.canned)


@pytest.mark.parametrize(
    ("canned", "line"),
    [
        (
            [{"key": "greet", "text": {"en": "Hi {name}", "zh_Hans": "你好 {nmae}"}}],
            '[[desk.canned]] #1 text: "greet" (zh_Hans): unknown placeholder {nmae} '
            "(placeholders: {name}, {tier}, {manager}, {last_order})",
        ),
        (
            [{"key": "a", "text": "x"}, {"key": "b", "text": "y"}, {"key": "A", "text": "z"}],
            '[[desk.canned]] #3 key: "A" again: keys must be unique, in any case (#1 has it)',
        ),
        (
            [{"key": "late", "text": {"zh_Hans": "您的订单 {last_order}"}}],
            '[[desk.canned]] #1 text: "late": no text in the default language en '
            "(the first of selfservice.languages)",
        ),
        (
            [{"key": "late", "text": {"en": "x", "fr": "y"}}],
            '[[desk.canned]] #1 text: "late": language fr is not in selfservice.languages',
        ),
        (
            [{"key": "w", "text": "Hi {name:>9}"}],
            '[[desk.canned]] #1 text: "w": {name} takes no format or conversion: write {name}',
        ),
        (
            [{"key": "w", "text": "Hi {0}"}],
            '[[desk.canned]] #1 text: "w": unknown placeholder {0}',
        ),
        (
            [{"key": "w", "text": "a { b"}],
            '[[desk.canned]] #1 text: "w": an unmatched { or }: write {{ and }} for a literal',
        ),
        (
            [{"key": "w", "text": "  "}],
            '[[desk.canned]] #1 text: "w": an empty text',
        ),
        (
            [{"key": "two words", "text": "x"}],
            '[[desk.canned]] #1 key: "two words": a key is 1-24 letters, digits, _ or -',
        ),
        (
            [{"key": "w"}],
            "[[desk.canned]] #1 text: required",
        ),
    ],
)
def test_each_canned_problem_is_one_line_naming_the_entry(
    canned: list[dict[str, Any]], line: str
) -> None:
    found = _problems({"desk": {"canned": canned}})
    assert len(found) == 1, found
    assert found[0].startswith(line), found


def test_every_problem_of_a_file_at_once() -> None:
    found = _problems(
        {
            "desk": {
                "timezone": "Europe/Berln",
                "canned": [
                    {"key": "x", "text": "{nope}"},
                    {"key": "y", "text": "fine"},
                    {"key": "Y", "text": {"zh_Hans": "好"}},
                ],
            }
        }
    )
    assert [f.split(":")[0] for f in found] == ["[desk] timezone", "[[desk.canned]] #1 text"]
    # Once those are fixed, the cross-checks (keys, languages) speak.
    found = _problems(
        {"desk": {"canned": [{"key": "y", "text": "a"}, {"key": "Y", "text": {"zh_Hans": "好"}}]}}
    )
    assert found == [
        '[[desk.canned]] #2 key: "Y" again: keys must be unique, in any case (#1 has it)',
        '[[desk.canned]] #2 text: "Y": no text in the default language en '
        "(the first of selfservice.languages)",
    ]


def test_topics_mode_needs_the_group() -> None:
    found = _problems({"desk": {"mode": "topics"}})
    assert found and "group_id" in found[0]


def test_literal_braces_and_every_placeholder_are_accepted() -> None:
    text = "{{" + " ".join("{" + p + "}" for p in PLACEHOLDERS) + "}}"
    assert placeholder_problem(text) is None
    reply = CannedReply(key="all", text=text)
    values = {p: p.upper() for p in PLACEHOLDERS}
    assert reply.fill("en", "en", values) == "{NAME TIER MANAGER LAST_ORDER}"


def test_the_customers_language_else_the_default() -> None:
    policy = parse_policy(
        {
            "desk": {
                "canned": [
                    {"key": "hi", "text": {"en": "Hi {name}", "zh_Hans": "你好 {name}"}},
                    {"key": "same", "text": "Hello {name} ({tier})"},
                ]
            }
        }
    )
    hi = policy.desk.reply("HI")
    assert hi is not None
    values = {"name": "Li", "tier": "VIP", "manager": "", "last_order": ""}
    assert hi.fill("zh-CN", "en", values) == "你好 Li"
    assert hi.fill("zh_Hans", "en", values) == "你好 Li"
    assert hi.fill("de", "en", values) == "Hi Li"
    assert hi.fill(None, "en", values) == "Hi Li"
    same = policy.desk.reply("same")
    assert same is not None and same.fill("zh", "en", values) == "Hello Li (VIP)"
    assert same.used("zh", "en") == ("name", "tier")
    assert policy.desk.reply("nope") is None
