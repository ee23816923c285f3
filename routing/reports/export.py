"""JSON with every figure, and CSV: the summary rows, then one row per conversation.

JSON: durations in seconds, shares as fractions (0..1), NPS in points, instants in ISO 8601
UTC, ``null`` where there is nothing to measure.

CSV (one file, two tables separated by an empty line):
  1. ``section,group,metric,value``: every figure of the JSON but the conversation rows, one
     per line (``overall,all,wait_seconds.p90,240``; ``tier,VIP,csat.average,4.5``;
     ``pareto,37,spend_share,0.81``...);
  2. one row per conversation: ``CONVERSATION_COLUMNS``.
Every text cell goes through ``routing.spreadsheet.spreadsheet_safe`` (a cell starting with
``=``, ``+``, ``-``, ``@``, tab or CR gets a leading ``'``); numbers we compute are written
as numbers (a plain number cannot be a formula).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from routing.reports.build import Group, Report
from routing.reports.conversations import ConversationRow
from routing.reports.feedback import deflection_rate
from routing.reports.stats import Durations, SlaShare
from routing.spreadsheet import spreadsheet_safe

__all__ = ["CONVERSATION_COLUMNS", "SUMMARY_COLUMNS", "to_csv", "to_dict", "to_json"]

SUMMARY_COLUMNS = ("section", "group", "metric", "value")
CONVERSATION_COLUMNS = (
    "conversation", "customer", "tier", "origin", "agent", "status", "queued_at",
    "first_response_at", "closed_at", "wait_seconds", "first_response_sla", "resolution_sla",
    "abandoned", "csat",
)  # fmt: skip


def _num(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _durations(d: Durations) -> dict[str, Any]:
    return {"count": d.count, "p50": _num(d.p50), "p90": _num(d.p90), "max": _num(d.max),
            "mean": _num(d.mean)}  # fmt: skip


def _sla(s: SlaShare) -> dict[str, Any]:
    return {"met": s.met, "missed": s.missed, "unjudged": s.unjudged, "share": _num(s.share)}


def group_dict(g: Group) -> dict[str, Any]:
    c = g.conversations
    d = g.deflection
    return {
        "scope": g.scope,
        "name": g.name,
        "agent_id": g.agent_id,
        "conversations": c.conversations,
        "answered": c.answered,
        "open": c.open,
        "closed": c.closed,
        "abandoned": c.abandoned,
        "abandoned_in_queue": c.abandoned_in_queue,
        "abandonment_rate": _num(c.abandonment_rate),
        "wait_seconds": _durations(c.wait),
        "sla_first_response": _sla(c.first_response),
        "sla_resolution": _sla(c.resolution),
        "handle_seconds": _durations(c.handle),
        "resolution_seconds": _durations(c.resolution_time),
        "csat": {"sent": c.csat.sent, "answered": c.csat.answered,
                 "response_rate": _num(c.csat.response_rate), "average": _num(c.csat.average)},
        "nps": {"answered": g.nps.answered, "promoters": g.nps.promoters,
                "passives": g.nps.passives, "detractors": g.nps.detractors,
                "score": _num(g.nps.score)},
        "deflection": None if d is None else {
            "ended": d.ended, "resolved": d.resolved, "expired": d.expired, "handoff": d.handoff,
            "abandoned": d.abandoned, "live": d.live, "deflected": d.deflected,
            "rate": _num(deflection_rate(d)),
        },
        "complaints": {"opened": g.complaints.opened, "resolved": g.complaints.resolved,
                       "breached": g.complaints.breached},
    }  # fmt: skip


def _sla_word(met: bool | None) -> str | None:
    return None if met is None else "met" if met else "missed"


def conversation_dict(r: ConversationRow) -> dict[str, Any]:
    return dict(
        zip(
            CONVERSATION_COLUMNS,
            (r.id, r.customer, r.tier, r.origin, r.agent, r.status, _instant(r.queued_at),
             _instant(r.first_response_at), _instant(r.closed_at), _num(r.wait_s),
             _sla_word(r.first_response_met), _sla_word(r.resolution_met), r.abandoned, r.csat),
            strict=True,
        )
    )  # fmt: skip


def to_dict(report: Report) -> dict[str, Any]:
    """Every figure of the report, JSON-ready."""
    p, k, a = report.period, report.concentration, report.at_risk
    return {
        "period": {"since": _instant(p.since), "until": _instant(p.until),
                   "generated_at": _instant(p.now)},
        "overall": group_dict(report.overall),
        "tiers": [group_dict(g) for g in report.tiers],
        "agents": [group_dict(g) for g in report.agents],
        "waits_over_time": {
            "bucket_seconds": report.waits.bucket_seconds,
            "starts": [_instant(s) for s in report.waits.starts],
            "tiers": {t: [_durations(d) for d in series]
                      for t, series in report.waits.by_tier.items()},
        },
        "tier_distribution": {
            "tiers": [{"tier": t.tier, "customers": t.customers, "spend_12m": _num(t.spend)}
                      for t in report.distribution],
            "guests": report.guests,
        },
        "tier_movements": {
            "changes": [{"from": m.from_tier, "to": m.to_tier, "changes": m.customers,
                         "direction": m.direction} for m in report.movements],
            "upgrades": sum(m.customers for m in report.movements if m.direction == "up"),
            "downgrades": sum(m.customers for m in report.movements if m.direction == "down"),
        },
        "revenue_concentration": {
            "customers": k.customers, "total_spend_12m": _num(k.total_spend),
            "top_customers": k.top_customers, "top_spend_12m": _num(k.top_spend),
            "top_share": _num(k.top_share),
            "curve": [[_num(x), _num(y)] for x, y in k.curve],
        },
        "revenue_at_risk": {
            "detractors": a.detractors, "detractor_spend_12m": _num(a.detractor_spend),
            "breached_customers": a.breached, "breach_spend_12m": _num(a.breach_spend),
            "customers": a.customers, "spend_12m": _num(a.spend),
        },
        "conversations": [conversation_dict(r) for r in report.rows],
    }  # fmt: skip


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n"


def _flat(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flat(f"{prefix}.{key}" if prefix else key, inner)
    else:
        yield prefix, value


def summary_rows(figures: dict[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    skip = {"scope", "name", "agent_id"}
    for group in [figures["overall"], *figures["tiers"], *figures["agents"]]:
        for metric, value in _flat("", {k: v for k, v in group.items() if k not in skip}):
            yield group["scope"], group["name"], metric, value
    waits = figures["waits_over_time"]
    for tier, series in waits["tiers"].items():
        for start, d in zip(waits["starts"], series, strict=True):
            for metric, value in d.items():
                yield "waits_over_time", f"{tier} {start}", f"wait_seconds.{metric}", value
    for t in figures["tier_distribution"]["tiers"]:
        yield "tier_distribution", t["tier"], "customers", t["customers"]
        yield "tier_distribution", t["tier"], "spend_12m", t["spend_12m"]
    yield "tier_distribution", "guests", "customers", figures["tier_distribution"]["guests"]
    moves = figures["tier_movements"]
    for m in moves["changes"]:
        yield "tier_movement", f"{m['from'] or 'new'} -> {m['to']}", m["direction"], m["changes"]
    yield "tier_movement", "all", "upgrades", moves["upgrades"]
    yield "tier_movement", "all", "downgrades", moves["downgrades"]
    conc = dict(figures["revenue_concentration"])
    curve = conc.pop("curve")
    for metric, value in conc.items():
        yield "revenue_concentration", "all", metric, value
    for i, (x, y) in enumerate(curve):
        yield "pareto", str(i), "customers_share", x
        yield "pareto", str(i), "spend_share", y
    for metric, value in figures["revenue_at_risk"].items():
        yield "revenue_at_risk", "all", metric, value


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return value
    return spreadsheet_safe(str(value))


def _rows(rows: Iterable[Iterable[Any]]) -> Iterator[list[Any]]:
    for row in rows:
        yield [_cell(v) for v in row]


def to_csv(report: Report) -> str:
    figures = to_dict(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(SUMMARY_COLUMNS)
    writer.writerows(_rows(summary_rows(figures)))
    writer.writerow([])
    writer.writerow(CONVERSATION_COLUMNS)
    writer.writerows(_rows(c.values() for c in figures["conversations"]))
    return buffer.getvalue()
