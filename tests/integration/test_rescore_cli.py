"""``contactbot customers show|override`` and ``contactbot score`` over the scoring model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main


def _import(cli_env: Path) -> None:
    (cli_env / "customers.csv").write_text(
        "external_id,name\nC1,Big Spender\nC2,Small\n", encoding="utf-8"
    )
    recent = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    (cli_env / "orders.csv").write_text(
        "external_id,order_id,amount,category,ordered_at,status\n"
        f"C1,O1,300000,tv,{recent},delivered\n"
        f"C1,O2,250000.50,books,{recent},delivered\n"
        f"C1,O3,999999,books,{recent},refunded\n"
        f"C2,O4,600,books,{recent},delivered\n",
        encoding="utf-8",
    )
    assert main(["import", "customers", str(cli_env / "customers.csv")]) == 0
    assert main(["import", "orders", str(cli_env / "orders.csv")]) == 0


def test_customers_show_prints_score_by_dimension_and_history(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _import(cli_env)
    capsys.readouterr()
    assert main(["customers", "show", "C1"]) == 0
    out = capsys.readouterr().out
    assert "tier: VIP" in out
    for dim in ("value", "frequency", "breadth", "recency", "loyalty", "satisfaction"):
        assert dim in out
    assert "spend 550,000.50 in 365 d" in out  # the refunded order does not count
    assert "no survey answers (neutral)" in out
    assert "Tier history (1 latest)" in out and "initial" in out
    assert main(["customers", "show", "NOPE"]) == 1


def test_customers_override_and_clear(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _import(cli_env)
    assert main(["customers", "override", "C2", "VIP"]) == 2  # who and why are required
    assert main(["customers", "override", "C2", "Gold", "--by", "m", "--reason", "r"]) == 2
    capsys.readouterr()
    assert (
        main(["customers", "override", "C2", "VIP", "--by", "Mia", "--reason", "key account"]) == 0
    )
    assert "C2: C -> VIP" in capsys.readouterr().out
    assert main(["customers", "show", "C2"]) == 0
    out = capsys.readouterr().out
    assert "override: VIP by Mia - key account" in out
    assert main(["score"]) == 0
    assert "no tier changes" in capsys.readouterr().out
    assert main(["customers", "override", "C2", "--clear"]) == 0
    assert "C2: VIP -> C" in capsys.readouterr().out
