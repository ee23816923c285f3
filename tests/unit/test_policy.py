"""The policy file: defaults, the shipped example, and errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from routing.policy.root import Policy, PolicyError, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_example_is_valid_and_equals_the_defaults() -> None:
    assert load_policy(ROOT / "contactbot.example.toml") == Policy()


def test_defaults_follow_the_business_literature() -> None:
    p = Policy()
    assert [(t.name, t.min_spend) for t in p.tiers] == [
        ("VIP", 500_000),
        ("A", 200_000),
        ("B", 50_000),
        ("C", 0),
    ]
    assert p.is_human_first("VIP") and not p.is_human_first("A")
    assert [p.rank(t) for t in ("VIP", "A", "B", "C", "unknown")] == [0, 1, 2, 3, 4]
    assert p.lowest_tier == "C"


def test_custom_tier_names_and_count() -> None:
    p = parse_policy(
        {
            "tiers": [
                {"name": "platinum", "min_spend": 1000, "human_first": True},
                {"name": "gold", "min_spend": 500},
                {"name": "iron", "min_spend": 100},
                {"name": "lead", "min_spend": 0},
                # A fifth tier is fine: the count is not fixed.
            ]
        }
    )
    assert p.tier_names == ("platinum", "gold", "iron", "lead")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tiers": [{"name": "A", "min_spend": 10}]}, "lowest tier must have min_spend = 0"),
        (
            {"tiers": [{"name": "A", "min_spend": 0}, {"name": "B", "min_spend": 10}]},
            "strictly decreasing",
        ),
        (
            {"tiers": [{"name": "A", "min_spend": 10}, {"name": "A", "min_spend": 0}]},
            "names must be unique",
        ),
        (
            {"scoring": {"window_dayz": 30}},
            "[scoring] window_dayz: unknown key (did you mean window_days?)",
        ),
        ({"scoring": {"window_days": 0}}, "[scoring] window_days: Input should be greater"),
        (
            {"identification": {"default_region": "usa"}},
            "[identification] default_region: String should match",
        ),
        (
            {
                "selfservice": {
                    "faq": [
                        {"id": "x", "question": "q", "answer": "a"},
                        {"id": "x", "question": "q2", "answer": "a2"},
                    ]
                }
            },
            "duplicate faq id 'x'",
        ),
    ],
)
def test_invalid_policies_name_the_problem(data: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_policy(data, "p.toml")
    assert message in str(exc.value)
    assert str(exc.value).startswith("p.toml: invalid policy")


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[tiers\nname=", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.toml")


def _keys(model: type, prefix: str = "") -> set[str]:
    from pydantic import BaseModel

    """Leaf keys (settings, not sections) of a policy model, dotted."""
    keys = set()
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        ann = field.annotation
        inner = [
            t
            for t in getattr(ann, "__args__", (ann,))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if inner:
            for t in inner:
                keys |= _keys(t, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_every_policy_key_is_documented_and_in_the_example() -> None:
    doc = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    example = (ROOT / "contactbot.example.toml").read_text(encoding="utf-8")
    for key in sorted(_keys(Policy)):
        leaf = key.rsplit(".", 1)[-1]
        assert f"`{leaf}`" in doc or f"`{key}`" in doc or f"[{key}]" in doc, key
        assert re.search(rf"(^|\W){re.escape(leaf)}(\W|$)", example), key
