"""Self-service policy validation: every error names the node; hours; tier visibility."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from routing.policy.root import Policy, PolicyError, parse_policy
from routing.policy.selfservice_parts import TierAccess, normalise_language

ROOT = Path(__file__).resolve().parents[2]


def _menu(items: list[str], **kw: Any) -> dict[str, Any]:
    return {"title": "T", "text": "X", "items": items, **kw}


@pytest.mark.parametrize(
    ("selfservice", "message"),
    [
        ({"menus": {"main": _menu(["hours", "shiping"])}}, "menu 'main': item 'shiping' is not"),
        (
            {"menus": {"main": _menu(["a"]), "a": _menu(["b"]), "b": _menu(["a"])}},
            "menu 'a': cycle a -> b -> a",
        ),
        (
            {"faq": [{"id": "hours", "question": "Q", "answer": {"en": "only English"}}]},
            "faq entry 'hours' answer: missing translation for zh_Hans",
        ),
        (
            {"menus": {"main": _menu(["hours"], title={"en": "Main", "zh-Hans": " "})}},
            "menu 'main' title: missing translation for zh_Hans",
        ),
        (
            {"actions": {"my_orders": {"title": "T", "action": "launch_rocket"}}},
            "[selfservice.actions.my_orders] action: Input should be",
        ),
        ({"root": "nowhere"}, "root: 'nowhere' is not a menu"),
        ({"tiers": {"Gold": {}}}, "[selfservice.tiers] Gold: no such tier (tiers: VIP, A, B, C)"),
        (
            {"tiers": {"C": {"hours": ["weekdays 9-5"]}}},
            "[selfservice.tiers.C] hours: hours 'weekdays 9-5'",
        ),
        (
            {"tiers": {"C": {"timezone": "Mars/Olympus"}}},
            '[selfservice.tiers.C] timezone: "Mars/Olympus" is not a time zone',
        ),
        ({"tiers": {"C": {"menu": "nope"}}}, "tiers.C.menu: 'nope' is not a menu"),
        (
            {"menus": {"main": _menu(["hours"]), "human": _menu(["hours"])}},
            "menu 'human': the id 'human' is reserved",
        ),
        (
            {"menus": {"main": _menu(["hours"], tiers=["Gold"])}},
            '[selfservice.menus.main] tiers: no such tier "Gold" (tiers: VIP, A, B, C)',
        ),
        (
            {"faq": [{"id": "x" * 41, "question": "Q", "answer": "A"}]},
            "[[selfservice.faq]] #1 id: String should have at most 40 characters",
        ),
    ],
)
def test_errors_name_the_node(selfservice: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_policy({"selfservice": selfservice}, "p.toml")
    assert message in str(exc.value)


def test_partial_section_keeps_the_shipped_tree_and_callback_data_fits() -> None:
    p = parse_policy({"selfservice": {"tiers": {"C": {"human": "after_selfservice"}}}})
    ss = p.selfservice
    assert ss.menus == Policy().selfservice.menus and ss.access("C").human == "after_selfservice"
    # Ids are at most 40 characters, so button data stays under Telegram's 64 bytes.
    from bot.keyboards import HelpedCb, NodeCb

    longest = "x" * 40
    assert len(NodeCb(id=longest).pack().encode()) <= 64
    assert len(HelpedCb(id=longest, yes=False).pack().encode()) <= 64
    # Renamed tiers: the shipped per-tier benefits simply go unused.
    renamed = parse_policy({"tiers": [{"name": "gold", "min_spend": 10}, {"name": "iron"}]})
    assert renamed.selfservice.access("gold") == TierAccess()


def test_tiers_see_only_their_nodes_and_back_goes_to_the_first_parent() -> None:
    p = parse_policy(
        {
            "selfservice": {
                "menus": {
                    "main": {"title": "M", "text": "M", "items": ["hours", "vip", "human"]},
                    "vip": {"title": "V", "text": "V", "items": ["hours"], "tiers": ["VIP"]},
                }
            }
        }
    )
    ss = p.selfservice
    assert ss.visible("vip", "VIP") and not ss.visible("vip", "C")
    assert ss.visible("hours", "C") and not ss.visible("nope", "C")
    assert ss.parents() == {"hours": "main", "vip": "main", "human": "main"}


def test_business_hours_in_the_tiers_time_zone() -> None:
    access = TierAccess(hours=("mon-fri 09:00-18:00", "sat 10:00-14:00"), timezone="Asia/Shanghai")
    # Monday 01:30 UTC is 09:30 in Shanghai; Monday 10:00 UTC is 18:00 there (closed).
    assert access.is_open(datetime(2026, 11, 30, 1, 30, tzinfo=UTC))
    assert not access.is_open(datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    assert access.is_open(datetime(2026, 11, 28, 3, 0, tzinfo=UTC))  # Saturday 11:00
    assert not access.is_open(datetime(2026, 11, 29, 3, 0, tzinfo=UTC))  # Sunday
    assert TierAccess().is_open(datetime(2026, 11, 29, 3, 0, tzinfo=UTC))  # 24/7
    wrap = TierAccess(hours=("fri-mon 00:00-24:00",))
    assert wrap.is_open(datetime(2026, 11, 29, 23, 59, tzinfo=UTC))  # Sunday
    assert not wrap.is_open(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))  # Wednesday


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("zh", "zh_Hans"),
        ("zh-CN", "zh_Hans"),
        ("zh-Hans", "zh_Hans"),
        ("zh_TW", "zh_Hans"),
        ("en-GB", "en"),
        ("EN", "en"),
        ("de", None),
        ("", None),
        (None, None),
    ],
)
def test_language_codes_are_normalised(code: str | None, expected: str | None) -> None:
    assert normalise_language(code, ["en", "zh_Hans"]) == expected


def test_policy_check_names_the_broken_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[selfservice.menus.main]\ntitle = "M"\ntext = "M"\nitems = ["hours", "shiping"]\n',
        encoding="utf-8",
    )
    assert main(["policy", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "menu 'main': item 'shiping' is not a menu, faq entry or action" in err
    assert main(["policy", "check", str(ROOT / "contactbot.example.toml")]) == 0
    assert "6 FAQ entries, 3 menus, 4 actions" in " ".join(capsys.readouterr().out.split())
