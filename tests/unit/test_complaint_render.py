"""What complaint messages look like: a target's length as people read it, and the follow-up
push (the policy's question escaped, Yes / No carrying the survey's id, in the customer's
language)."""

from __future__ import annotations

import json

import pytest

from bot import i18n, keyboards, texts
from bot.handlers.customer.complaint import render_follow_up
from surveys.complaint_follow_up import FollowUpPush


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 min"),
        (30, "1 min"),
        (720, "12 min"),
        (3600, "1 h"),
        (5400, "1 h 30 min"),
        (86400, "1 d"),
        (108000, "1 d 6 h"),
    ],
)
def test_durations(seconds: float, shown: str) -> None:
    assert texts.complaint.duration(seconds) == shown


def test_the_follow_up_push_escapes_the_question_and_carries_the_survey() -> None:
    text, markup = render_follow_up(
        FollowUpPush(41, "complaint", 7, None, "Was #3 <delivery> resolved?")
    )
    assert text == "Was #3 &lt;delivery&gt; resolved?"
    buttons = [b for row in json.loads(markup)["inline_keyboard"] for b in row]
    assert [b["text"] for b in buttons] == ["👍 Yes, resolved", "👎 Not resolved"]
    assert [keyboards.FollowUpCb.unpack(b["callback_data"]) for b in buttons] == [
        keyboards.FollowUpCb(id=41, yes=True),
        keyboards.FollowUpCb(id=41, yes=False),
    ]


def test_the_follow_up_buttons_speak_the_customers_language() -> None:
    _, markup = render_follow_up(FollowUpPush(41, "complaint", 7, "zh-CN", "您满意吗？"))
    labels = [b["text"] for row in json.loads(markup)["inline_keyboard"] for b in row]
    assert labels == ["👍 已解决", "👎 未解决"]
    with i18n.speaking("en"):
        assert texts.complaint.yes_button() == "👍 Yes, resolved"
