"""Smoke: every benchmark runs at its tiny size and reports its summary figures.

The benchmarks are not tests (their figures are measured by ``python -m bench``); this only
checks they still run against the current code, and that claims are never doubled. The
three that start bot processes run side by side to keep this file well under 30 s.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from bench import cpu, latency, memory, pipeline
from bench.__main__ import main as bench_main
from bench.common import Figure


def _by_name(figures: list[Figure]) -> dict[str, Figure]:
    return {f.name: f for f in figures}


async def test_pipeline_latency_and_memory_tiny(tmp_path: Path) -> None:
    dirs = [tmp_path / name for name in ("pipeline", "latency", "memory", "cpu")]
    for d in dirs:
        d.mkdir()
    pipe, lat, (peak, rss), used = await asyncio.gather(
        pipeline.run("tiny", dirs[0]),
        latency.run("tiny", dirs[1]),
        # One of memory's two runs (the other differs only in the number of customers).
        memory.serve(dirs[2], memory.SIZES["tiny"].large, memory.SIZES["tiny"]),
        cpu.run("tiny", dirs[3], path="mix"),
    )
    figs = _by_name(pipe)
    assert figs["pipeline_contactbot_updates_per_s"].value > 0
    assert figs["pipeline_bare_aiogram_updates_per_s"].value > 0
    assert figs["pipeline_ratio"].value > 0
    assert figs["pipeline_contactbot_cpu_ms_per_update"].value > 0
    # The mix makes more Bot API calls per update than an echo (VIP pages, hand-offs).
    assert figs["pipeline_contactbot_api_calls_per_update"].value >= 1
    figs = _by_name(used)
    assert (
        figs["cpu_contactbot_ms_per_update"].value
        > figs["cpu_bare_aiogram_ms_per_update"].value
        > 0
    )
    figs = _by_name(lat)
    assert figs["latency_vip_missing_pages"].value == 0
    tiny = latency.SIZES["tiny"]
    # Every VIP slot of the headline step (40 msg/s, 60% VIPs) was paged and measured.
    assert figs["latency_vip_messages"].value == int(
        round(tiny.headline * tiny.step_s) * tiny.vip_share
    )
    for rate in tiny.sweep:
        assert figs[f"latency_sweep_{rate:g}_p99_ms"].value > 0
    assert 0 < figs["latency_vip_p50_ms"].value <= figs["latency_vip_p99_ms"].value
    assert figs["latency_vip_p99_ms"].value <= figs["latency_vip_max_ms"].value
    assert 0 < rss <= peak


async def test_cpu_every_path_tiny(tmp_path: Path) -> None:
    """Each handler path's measuring process runs and finds its effect (chats opened,
    claimed, closed; every update done), or it fails. The processes run side by side."""
    per_update = await asyncio.gather(
        *(cpu._in_fresh_process(name, tmp_path, "tiny", "0") for name in cpu.PATHS)
    )
    assert all(0 < s < 1 for s in per_update), dict(zip(cpu.PATHS, per_update, strict=True))


def test_cpu_one_path_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures.json"
    assert bench_main(["cpu", "--size", "tiny", "--path", "close", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "load average at start:" in printed
    figures = json.loads(out.read_text())["figures"]
    assert figures["cpu_path_close_ms_per_update"]["value"] > 0
    assert figures["cpu_bare_aiogram_ms_per_update"]["value"] > 0
    assert "cpu_contactbot_ms_per_update" not in figures  # the mix was not asked for


@pytest.mark.pg
async def test_pipeline_on_postgresql_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline on PostgreSQL: the test database (its schema is reset), not the bench's."""
    if not os.environ.get("CONTACTBOT_TEST_PG_URL"):
        pytest.skip("PostgreSQL tests need CONTACTBOT_TEST_PG_URL")
    monkeypatch.delenv("CONTACTBOT_BENCH_PG_URL", raising=False)
    figs = _by_name(await pipeline.run("tiny", tmp_path, backend="postgresql"))
    assert figs["pipeline_pg_contactbot_updates_per_s"].value > 0
    assert figs["pipeline_pg_ratio"].value > 0
    assert figs["pipeline_pg_contactbot_api_calls_per_update"].value >= 1
    assert figs["pipeline_bare_aiogram_updates_per_s"].value > 0
    assert "pipeline_contactbot_updates_per_s" not in figs  # SQLite was not asked for


def test_claims_tiny_through_the_cli_never_double(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "figures.json"
    assert bench_main(["claims", "--size", "tiny", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "== summary" in printed
    assert "claims_sqlite_double_claims: 0" in printed
    figures = json.loads(out.read_text())["figures"]
    assert figures["claims_sqlite_per_s"]["value"] > 0
    for name, fig in figures.items():
        if name.endswith(("_double_claims", "_left_unclaimed")):
            assert fig["value"] == 0, name
