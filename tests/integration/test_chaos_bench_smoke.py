"""Smoke: the chaos benchmark at its tiny size on SQLite, through ``python -m bench``.

Twelve customers and four agents exchange about 200 messages while the fake Bot API rate
limits, goes down for 3 s, and the bot is SIGKILLed once and SIGTERMed once. Nothing may be
lost, doubled or reordered either way, and no confirmed update may go unhandled. It takes
one to two minutes (a kill can leave a send in flight that is retried when its 30 s lease
ends), hence ``slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import chaos
from bench.__main__ import main as bench_main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_chaos_tiny_sqlite_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "figures.json"
    code = bench_main(["chaos", "--size", "tiny", "--backend", "sqlite", "--json", str(out)])
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())["figures"]
    size = chaos.SIZES["tiny"]

    # The figures are printed in the summary, each way.
    for way in ("to_agent", "to_customer"):
        for what in ("sent", "lost", "duplicated", "out_of_order", "max_delay_s"):
            assert f"chaos_sqlite_{way}_{what}:" in printed
    assert "chaos_sqlite_updates_lost:" in printed
    assert "postgresql" not in printed  # --backend sqlite: not even a skip line

    # Everything was sent, and the chaos happened.
    assert figures["chaos_sqlite_to_agent_sent"]["value"] == size.customers * size.to_agent
    assert figures["chaos_sqlite_to_customer_sent"]["value"] == size.customers * size.to_customer
    assert figures["chaos_sqlite_sigkills"]["value"] == size.kills
    assert figures["chaos_sqlite_sigterms"]["value"] == size.terms
    assert figures["chaos_sqlite_outage_refused_calls"]["value"] > 0
    assert figures["chaos_sqlite_starts"]["value"] >= 1 + size.kills + size.terms

    # The guarantees.
    broken = {
        name: f["value"] for name, f in figures.items() if f["goal"] == "== 0" and f["value"] != 0
    }
    assert not broken, f"{broken}\n{printed[-4000:]}"
    assert code == 0
