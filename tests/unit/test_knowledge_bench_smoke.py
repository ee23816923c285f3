"""Smoke: the FAQ search benchmark runs at a tiny size and prints its figures."""

from __future__ import annotations

import pytest

from bench import knowledge


def test_knowledge_bench_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    assert knowledge.main(["--entries", "12", "--queries", "20", "--no-jieba"]) == 0
    out = capsys.readouterr().out
    for name in ("knowledge_top1", "knowledge_build_ms", "knowledge_query_p99_ms"):
        assert f"{name}: " in out
