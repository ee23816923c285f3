"""The summary tables' columns, shared by the terminal table and the HTML page: a header and
how a group's figure reads, per column."""

from __future__ import annotations

from collections.abc import Callable

from routing.reports import formatting as f
from routing.reports.build import Group, Report
from routing.reports.feedback import deflection_rate
from routing.reports.stats import SlaShare

__all__ = [
    "CONVERSATIONS",
    "SATISFACTION",
    "Column",
    "at_risk_rows",
    "concentration_rows",
    "heading",
]

Column = tuple[str, Callable[[Group], str]]


def _sla(s: SlaShare) -> str:
    return f.MISSING if s.share is None else f"{f.percent(s.share)} ({s.met}/{s.judged})"


def _abandoned(g: Group) -> str:
    c = g.conversations
    return f"{c.abandoned} ({f.percent(c.abandonment_rate)})" if c.conversations else "0"


def _deflection(g: Group) -> str:
    d = g.deflection
    if d is None:
        return f.MISSING
    return f"{f.percent(deflection_rate(d))} ({d.deflected}/{d.ended})" if d.ended else f.MISSING


def _csat(g: Group) -> str:
    c = g.conversations.csat
    return f.score(c.average) + (f" ({c.answered})" if c.answered else "")


def _nps(g: Group) -> str:
    n = g.nps
    if not n.answered:
        return f.MISSING
    return f"{f.points(n.score)} ({n.promoters}/{n.passives}/{n.detractors})"


CONVERSATIONS: tuple[Column, ...] = (
    ("conversations", lambda g: f.number(g.conversations.conversations)),
    ("answered", lambda g: f.number(g.conversations.answered)),
    ("open", lambda g: f.number(g.conversations.open)),
    ("abandoned", _abandoned),
    ("wait p50", lambda g: f.duration(g.conversations.wait.p50)),
    ("wait p90", lambda g: f.duration(g.conversations.wait.p90)),
    ("wait max", lambda g: f.duration(g.conversations.wait.max)),
    ("1st response SLA met", lambda g: _sla(g.conversations.first_response)),
    ("resolution SLA met", lambda g: _sla(g.conversations.resolution)),
    ("handle (mean)", lambda g: f.duration(g.conversations.handle.mean)),
    ("resolution (mean)", lambda g: f.duration(g.conversations.resolution_time.mean)),
)

SATISFACTION: tuple[Column, ...] = (
    ("CSAT (answers)", _csat),
    ("CSAT response", lambda g: f.percent(g.conversations.csat.response_rate)),
    ("NPS (P/P/D)", _nps),
    ("deflected", _deflection),
    ("complaints opened", lambda g: f.number(g.complaints.opened)),
    ("resolved", lambda g: f.number(g.complaints.resolved)),
    ("breached", lambda g: f.number(g.complaints.breached)),
)


def concentration_rows(report: Report) -> list[tuple[str, str]]:
    k = report.concentration
    return [
        ("customers (records)", f.number(k.customers)),
        ("12-month spend", f.money(k.total_spend)),
        (f"top 20% ({f.number(k.top_customers)} customers)", f.money(k.top_spend)),
        ("share held by the top 20%", f.percent(k.top_share)),
    ]


def at_risk_rows(report: Report) -> list[tuple[str, str]]:
    a = report.at_risk
    return [
        (f"detractors ({f.number(a.detractors)})", f.money(a.detractor_spend)),
        (f"human-first chats that breached ({f.number(a.breached)})", f.money(a.breach_spend)),
        (f"either, counted once ({f.number(a.customers)})", f.money(a.spend)),
    ]


def heading(report: Report) -> str:
    p = report.period
    return f"{p.since:%Y-%m-%d %H:%M} to {p.until:%Y-%m-%d %H:%M} UTC"
