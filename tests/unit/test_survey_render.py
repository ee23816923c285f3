"""The survey message's keyboard, served from a cached template, equals the built one."""

from __future__ import annotations

import json

import pytest

from bot.handlers.survey import ScoreCb, render, score_keyboard, score_markup
from routing.scoring.model import CSAT, NPS
from surveys.outbox_claims import SurveyPush
from surveys.push_transport import Push


@pytest.mark.parametrize("kind", [CSAT, NPS])
@pytest.mark.parametrize("survey_id", [1, 9, 10, 123_456_789, 2**53])
def test_packed_keyboard_equals_the_built_one(kind: str, survey_id: int) -> None:
    built = score_keyboard(survey_id, kind).model_dump(exclude_none=True)
    assert json.loads(score_markup(survey_id, kind)) == built


def test_render_packs_this_surveys_id_into_every_button() -> None:
    _, first = render(Push(1, 10, SurveyPush(41, NPS, 1, None)))
    _, second = render(Push(2, 11, SurveyPush(42, NPS, 2, "zh-Hans")))
    for markup, sid in ((first, 41), (second, 42)):
        buttons = [b for row in json.loads(markup)["inline_keyboard"] for b in row]
        assert [ScoreCb.unpack(b["callback_data"]) for b in buttons] == [
            ScoreCb(id=sid, score=n) for n in range(11)
        ]


def test_render_asks_in_the_customers_language() -> None:
    # Pushes leave from a scheduler job, outside any update's locale.
    english, _ = render(Push(1, 10, SurveyPush(41, CSAT, 1, None)))
    chinese, _ = render(Push(2, 11, SurveyPush(42, CSAT, 2, "zh-CN")))
    assert english.isascii()
    assert not chinese.isascii() and chinese != english
