"""The report as one self-contained HTML file: inline CSS and inline SVG charts, no script,
no link to anything outside it, so it reads the same offline, mailed or archived.

Charts: waits by tier over time (p50 and p90 per day, or per week for long periods), SLA met
by tier, CSAT and NPS by tier and by agent, the tier distribution, the Pareto curve. Then the
summary tables (overall, tiers, agents), tier movements and the revenue figures. The rows per
conversation are in ``--format csv`` (and json). Every piece of data is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from routing.reports import charts, columns
from routing.reports import formatting as f
from routing.reports.build import Group, Report

__all__ = ["render"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.muted{color:#666}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:140px}
.card b{display:block;font-size:20px}.charts{display:flex;flex-wrap:wrap;gap:16px}
.charts svg{border:1px solid #eee;border-radius:6px;max-width:100%;height:auto}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f5f5f5}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:13px}
dd{margin:0}
"""


def _table(groups: Sequence[Group], cols: Sequence[columns.Column], first: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in (first, *(h for h, _ in cols)))
    body = "".join(
        "<tr>" + f"<td>{escape(g.name)}</td>"
        + "".join(f"<td>{escape(cell(g))}</td>" for _, cell in cols) + "</tr>"
        for g in groups
    )  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pairs(rows: Sequence[tuple[str, str]]) -> str:
    return "<dl>" + "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows
    ) + "</dl>"  # fmt: skip


def _cards(report: Report) -> str:
    o = report.overall
    c = o.conversations
    d = o.deflection
    cards = [
        ("conversations", f.number(c.conversations)),
        ("wait p50 / p90", f"{f.duration(c.wait.p50)} / {f.duration(c.wait.p90)}"),
        ("1st response SLA met", f.percent(c.first_response.share)),
        ("abandoned", f.percent(c.abandonment_rate)),
        ("CSAT", f.score(c.csat.average)),
        ("NPS", f.points(o.nps.score)),
        ("deflected", f.percent(d.deflected / d.ended if d and d.ended else None)),
        ("revenue at risk", f.money(report.at_risk.spend)),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><span class="muted">{escape(k)}</span><b>{escape(v)}</b></div>'
        for k, v in cards
    ) + "</div>"  # fmt: skip


def _csat_tick(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _charts(report: Report) -> str:
    tiers = [g for g in report.tiers if g.conversations.conversations or g.nps.answered]
    tiers = tiers or list(report.tiers)
    names = [g.name for g in tiers]
    agents = list(report.agents)
    fmt_date = "%m-%d" if report.waits.bucket_seconds <= 86400 else "%Y-%m-%d"
    labels = [s.strftime(fmt_date) for s in report.waits.starts]
    waits = {t: s for t, s in report.waits.by_tier.items() if any(d.count for d in s)}
    out = [
        charts.lines(
            "Wait to first agent message, p50, by tier",
            labels,
            [(t, [d.p50 for d in s]) for t, s in waits.items()],
            f.duration,
        ),
        charts.lines(
            "Wait to first agent message, p90, by tier",
            labels,
            [(t, [d.p90 for d in s]) for t, s in waits.items()],
            f.duration,
        ),
        charts.bars(
            "SLA met by tier",
            names,
            [
                ("first response", [g.conversations.first_response.share for g in tiers]),
                ("resolution", [g.conversations.resolution.share for g in tiers]),
            ],
            lambda v: f"{v:.0%}",
            high=1.0,
        ),
        charts.bars(
            "CSAT by tier (1-5)",
            names,
            [("CSAT", [g.conversations.csat.average for g in tiers])],
            _csat_tick,
            high=5.0,
        ),
        charts.bars(
            "NPS by tier", names, [("NPS", [g.nps.score for g in tiers])],
            lambda v: f"{v:+.0f}", low=-100.0, high=100.0,
        ),
        charts.bars(
            "CSAT by agent (1-5)",
            [g.name for g in agents],
            [("CSAT", [g.conversations.csat.average for g in agents])],
            _csat_tick,
            high=5.0,
        ),
        charts.bars(
            "NPS by agent (their accounts' customers)",
            [g.name for g in agents],
            [("NPS", [g.nps.score for g in agents])],
            lambda v: f"{v:+.0f}", low=-100.0, high=100.0,
        ),
        charts.bars(
            "Customers by tier now",
            [t.tier for t in report.distribution],
            [("customers", [float(t.customers) for t in report.distribution])],
            lambda v: f"{v:,.0f}",
        ),
        charts.curve(
            "Revenue concentration: share of 12-month spend (Pareto)",
            report.concentration.curve,
            0.2,
        ),
    ]  # fmt: skip
    return '<div class="charts">' + "".join(out) + "</div>"


def _movements(report: Report) -> str:
    if not report.movements:
        return '<p class="muted">No tier changes in the period.</p>'
    rows = "".join(
        f"<tr><td>{escape(m.from_tier or 'new')}</td><td>{escape(m.to_tier)}</td>"
        f"<td>{escape(m.direction)}</td><td>{m.customers}</td></tr>"
        for m in report.movements
    )
    return (
        "<table><thead><tr><th>from</th><th>to</th><th>direction</th><th>changes</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )


def _distribution(report: Report) -> str:
    total = sum(t.customers for t in report.distribution)
    rows = "".join(
        f"<tr><td>{escape(t.tier)}</td><td>{f.number(t.customers)}</td>"
        f"<td>{f.percent(t.customers / total if total else None)}</td>"
        f"<td>{f.money(t.spend)}</td></tr>"
        for t in report.distribution
    )
    return (
        "<table><thead><tr><th>tier</th><th>customers</th><th>share</th>"
        f"<th>12-month spend</th></tr></thead><tbody>{rows}</tbody></table>"
        f'<p class="muted">Guests (no CRM record), not counted: {f.number(report.guests)}</p>'
    )


def render(report: Report) -> str:
    """The whole page."""
    groups = [report.overall, *report.tiers]
    title = f"contactbot report: {columns.heading(report)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">Conversations queued in the period; made '
        f"{report.period.now:%Y-%m-%d %H:%M} UTC.</p>",
        _cards(report),
        "<h2>Charts</h2>",
        _charts(report),
        "<h2>Conversations by tier</h2>",
        _table(groups, columns.CONVERSATIONS, "tier"),
        "<h2>Satisfaction, self-service and complaints by tier</h2>",
        _table(groups, columns.SATISFACTION, "tier"),
        "<h2>By agent</h2>",
        _table(report.agents, columns.CONVERSATIONS, "agent"),
        _table(report.agents, columns.SATISFACTION[:3] + columns.SATISFACTION[4:], "agent"),
        "<h2>Tiers now</h2>",
        _distribution(report),
        "<h2>Tier movements in the period</h2>",
        _movements(report),
        "<h2>Revenue concentration</h2>",
        _pairs(columns.concentration_rows(report)),
        "<h2>Revenue at risk (12-month spend)</h2>",
        _pairs(columns.at_risk_rows(report)),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
