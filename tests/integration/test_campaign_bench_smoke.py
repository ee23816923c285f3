"""Smoke: the campaign benchmark runs at a tiny size and its correctness goals hold.

Speed is not asserted (a loaded CI machine says nothing about the outbox); the figures come
from ``python -m bench.campaign``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench.campaign import main


async def test_campaign_bench_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "campaign.json"
    argv = ["--customers", "200", "--rate", "200", "--injected-429", "1", "--same-process"]
    argv += ["--json", str(out)]
    # main() runs its own event loop, so it gets a thread of its own.
    assert await asyncio.to_thread(main, argv) == 0
    text = capsys.readouterr().out
    for name in ("campaign_rate_ratio", "campaign_429", "campaign_duplicates"):
        assert f"\n{name}: " in text
    figures = json.loads(out.read_text())["figures"]
    for name in (
        "campaign_429",
        "campaign_clean_lost",
        "campaign_duplicates",
        "campaign_faults_not_exactly_once",
        "campaign_faults_wrong_rows",
    ):
        assert figures[name]["value"] == 0, name
    assert figures["campaign_rate"]["value"] > 0
