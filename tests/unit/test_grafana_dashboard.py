"""deploy/grafana/contactbot.json: valid JSON whose every query names metrics that
bot/http/metrics.py exposes (a renamed metric would leave a panel silently empty)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bot.http.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "contactbot.json"


def _exposed() -> set[str]:
    """Every sample name a fresh registry can expose (histogram and counter suffixes too)."""
    m = Metrics()
    # Labelled metrics expose samples only once a child exists: make one of each.
    m.claimed("VIP", 1)
    m.sla_event("VIP", "first_response", "breach")
    m.relay("to_agent")
    m.update("message", "handled", 0.01)
    m.push_sent("csat")
    m.telegram_error(429, "push")
    m.queue_length.labels("VIP").set(0)
    m.queue_oldest.labels("VIP").set(0)
    return {s.name for family in m.registry.collect() for s in family.samples}


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def test_every_query_names_an_exposed_metric() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["uid"] == "contactbot" and board["panels"]
    exprs = _exprs(board)
    assert len(exprs) >= 20
    exposed = _exposed()
    used = {n for e in exprs for n in re.findall(r"\b((?:contactbot|process)_[a-z_]+)\b", e)}
    assert used - exposed == set()
    # Each family the metrics module defines appears on the dashboard.
    families = {f.name for f in Metrics().registry.collect() if f.name.startswith("contactbot_")}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert families - shown == set()


def test_panels_do_not_overlap() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    cells: set[tuple[int, int]] = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, p["title"]
        cells |= mine
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
