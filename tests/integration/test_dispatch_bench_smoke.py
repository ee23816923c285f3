"""Smoke: the dispatch benchmark runs at a tiny size and its correctness goals hold.

Speed is not asserted here (a loaded CI machine says nothing about the sender); the real
figures come from ``python -m bench.dispatch``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench.dispatch import main


async def test_dispatch_bench_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dispatch.json"
    argv = ["--customers", "300", "--rate", "200", "--injected-429", "1", "--json", str(out)]
    # main() runs its own event loop, so it gets a thread of its own.
    assert await asyncio.to_thread(main, argv) == 0
    text = capsys.readouterr().out
    for name in ("dispatch_rate_ratio", "dispatch_429", "dispatch_duplicates"):
        assert f"\n{name}: " in text
    figures = json.loads(out.read_text())["figures"]
    assert figures["dispatch_429"]["value"] == 0
    assert figures["dispatch_duplicates"]["value"] == 0
    assert figures["dispatch_faults_lost"]["value"] == 0
    assert figures["dispatch_rate"]["value"] > 0
