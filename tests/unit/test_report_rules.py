"""routing.reports' pure parts: percentiles, NPS classes, SLA judgement, the period's words,
and the HTML page escaping what it shows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from routing.reports import charts, page
from routing.reports.build import AGENT, OVERALL, Group, Report
from routing.reports.conversations import WaitSeries, figures, sla_outcome
from routing.reports.feedback import ComplaintCounts
from routing.reports.period import period
from routing.reports.revenue import AtRisk, Concentration
from routing.reports.stats import Durations, Nps, SlaShare, percentile
from routing.selfservice.deflection import Deflection

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.9) == pytest.approx(37.0)
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([], 0.5) is None
    assert Durations.of([40.0, 10.0, 30.0, 20.0]) == Durations(4, 25.0, 37.0, 40.0, 25.0)


def test_nps_classes_follow_the_policy_maximum() -> None:
    answers = [(s, 1) for s in range(11)]
    assert Nps.of(answers, detractor_max=6) == Nps(promoters=2, passives=2, detractors=7)
    assert Nps.of(answers, detractor_max=6).score == pytest.approx(100 * (2 - 7) / 11)
    # A stricter policy: 7 and 8 become detractors, promoters stay 9-10.
    assert Nps.of(answers, detractor_max=8) == Nps(promoters=2, passives=0, detractors=9)
    assert Nps().score is None


def test_sla_judgement() -> None:
    t0 = NOW - timedelta(hours=5)
    after = t0.__add__
    # Done within the target (at most): met; later: missed.
    assert sla_outcome(60, t0, after(timedelta(seconds=60)), None, NOW) is True
    assert sla_outcome(60, t0, after(timedelta(seconds=61)), None, NOW) is False
    # Not done: open past the target missed, within it not judged; closed before it: not
    # judged, after it: missed.
    assert sla_outcome(60, t0, None, None, NOW) is False
    assert sla_outcome(86400, t0, None, None, NOW) is None
    assert sla_outcome(3600, t0, None, after(timedelta(minutes=30)), NOW) is None
    assert sla_outcome(600, t0, None, after(timedelta(minutes=30)), NOW) is False
    # No target for the tier: not judged.
    assert sla_outcome(None, t0, after(timedelta(days=3)), None, NOW) is None
    assert SlaShare.of([True, False, None, True]) == SlaShare(2, 1, 1)
    assert SlaShare(2, 1, 1).share == pytest.approx(2 / 3)


def test_the_period_words() -> None:
    p = period(None, None, NOW)
    assert (p.since, p.until, p.now) == (NOW - timedelta(days=30), NOW, NOW)
    p = period("2w", "2026-11-08", NOW)
    assert (p.since, p.until) == (
        datetime(2026, 10, 25, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC)
    )  # fmt: skip
    p = period("2026-11-01T08:00+02:00", "2026-11-01T12:00", NOW)
    assert (p.since, p.until) == (
        datetime(2026, 11, 1, 6, tzinfo=UTC), datetime(2026, 11, 1, 12, tzinfo=UTC)
    )  # fmt: skip
    assert datetime(2026, 11, 1, 11, 59, tzinfo=UTC) in p
    assert datetime(2026, 11, 1, 12, tzinfo=UTC) not in p
    for since, until in (("30x", None), ("-3d", None), ("2026-02-30", None), ("1d", "soon")):
        with pytest.raises(ValueError) as exc:
            period(since, until, NOW)
        assert "\n" not in str(exc.value)


def _empty_report(agent_name: str) -> Report:
    when = period("7d", None, NOW)
    none = Deflection(0, 0, 0, 0, 0, 0)

    def group(scope: str, name: str) -> Group:
        return Group(scope, name, 1 if scope == AGENT else None, figures([]), Nps(2, 0, 1),
                     ComplaintCounts(), None if scope == AGENT else none)  # fmt: skip

    return Report(
        period=when, overall=group(OVERALL, "all"), tiers=(), agents=(group(AGENT, agent_name),),
        waits=WaitSeries(86400, (when.since,), {}), distribution=(), guests=0, movements=(),
        concentration=Concentration(0, 0.0, 0, 0.0, ((0.0, 0.0),)),
        at_risk=AtRisk(0, 0.0, 0, 0.0, 0, 0.0), rows=(),
    )  # fmt: skip


def test_the_page_escapes_names_and_links_nothing() -> None:
    name = '<script src="https://x.example/a.js"></script>&'
    html = page.render(_empty_report(name))
    # The name is shown as text (table cell, chart label and tooltip), never as markup.
    assert "<script" not in html and not re.search(r"<[^>]*\s(src|href)\s*=", html)
    assert (
        "<td>&lt;script src=&quot;https://x.example/a.js&quot;&gt;&lt;/script&gt;&amp;</td>" in html
    )


def test_chart_labels_are_escaped() -> None:
    svg = charts.bars("t", ["<b>&"], [("s", [1.0])], str)
    assert "<b>" not in svg and "&lt;b&gt;&amp;" in svg
    assert charts.lines("t", [], [], str).count("no data") == 1
