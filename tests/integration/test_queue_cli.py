"""`contactbot agents add --tiers`: agents limited to tiers, validated against the policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main


def test_agents_add_with_tiers(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agents", "add", "7", "--name", "Vera", "--tiers", "VIP, A"]) == 0
    assert "tiers VIP,A" in capsys.readouterr().out
    # An update without --tiers keeps them; an unknown tier is refused and changes nothing.
    assert main(["agents", "add", "7", "--name", "Vera", "--max-chats", "4"]) == 0
    assert "max 4 chats, tiers VIP,A" in capsys.readouterr().out
    assert main(["agents", "add", "7", "--name", "Vera", "--tiers", "VIP,Gold"]) == 2
    assert "unknown tier(s) Gold" in capsys.readouterr().err
    assert main(["agents", "list"]) == 0
    assert "VIP,A" in capsys.readouterr().out
    # An empty list means every tier again.
    assert main(["agents", "add", "7", "--name", "Vera", "--tiers", ""]) == 0
    assert "tiers all" in capsys.readouterr().out
