"""Smoke: ``python -m bench scaleout --size tiny`` runs and prints its figures.

Eight customers, two agents, three instances on PostgreSQL + Redis; the throughput with 1
and with 3 instances on 30 updates each, then the busy hour with a SIGKILL and a SIGTERM
(and restart) between its halves. The guarantees under a kill *mid-traffic* are
test_kill.py's; here the figures must exist and the correctness ones be 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import scaleout
from bench.__main__ import main as bench_main
from tests.multi.conftest import skip_reason

pytestmark = [pytest.mark.e2e, pytest.mark.pg, pytest.mark.slow]


def test_scaleout_tiny_prints_its_figures_and_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "figures.json"
    code = bench_main(["scaleout", "--size", "tiny", "--json", str(out)])
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())["figures"]
    size = scaleout.SIZES["tiny"]

    for name in (
        "lost",
        "duplicated",
        "reordered",
        "double_claims",
        "agents_over_capacity",
        "updates_per_s_1",
        "updates_per_s_3",
        "cpu_ms_per_update_1",
        "cpu_ms_per_update_3",
    ):
        assert f"scaleout_{name}:" in printed, printed
    assert figures["scaleout_messages"]["value"] == size.total
    assert figures["scaleout_updates_per_s_1"]["value"] > 0
    assert figures["scaleout_updates_per_s_3"]["value"] > 0
    assert "SIGKILL inst-0" in printed and "SIGTERM inst-1: exit 0" in printed, printed
    broken = {
        name: f["value"] for name, f in figures.items() if f["goal"] == "== 0" and f["met"] is False
    }
    assert not broken, f"{broken}\n{printed}"
    assert code == 0
