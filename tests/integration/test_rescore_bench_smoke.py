"""``python -m bench rescore`` at a tiny size: the data set, the reset between repetitions,
both run kinds and the goal line. SQLite only: the PostgreSQL run drops and recreates its
database's schema, which the other tests on that database would not survive."""

from __future__ import annotations

from pathlib import Path

from bench import rescore


async def test_rescore_bench_tiny_sqlite(tmp_path: Path) -> None:
    figures = await rescore.run(
        "tiny", "sqlite", repeat=2, db=tmp_path / "score.db", customers=300, orders=3_000
    )
    by_name = {f.name: f for f in figures}
    assert set(by_name) == {
        "rescore_sqlite_initial_s",
        "rescore_sqlite_initial_cpu_s",
        "rescore_sqlite_steady_s",
        "rescore_sqlite_steady_cpu_s",
    }
    assert by_name["rescore_sqlite_steady_s"].goal == "< 20 s"
    assert by_name["rescore_sqlite_steady_s"].met is True
