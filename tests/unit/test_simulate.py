"""The queue simulator: reproducible, faithful to queueing theory, and to the queue's rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from routing.policy.root import Policy
from routing.simulate import (
    Patience,
    ScenarioError,
    load_scenario,
    parse_scenario,
    recommend,
    simulate,
    to_json,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "scenario.example.toml"


def _scenario(pol: Policy, **over: Any) -> Any:
    data: dict[str, Any] = {
        "hours": 8,
        "agents": {"count": 3, "capacity": 1},
        "arrivals": {"VIP": 4, "A": 8, "B": 10, "C": 14},
        "service": {"mean_seconds": 360},
    }
    data.update(over)
    return parse_scenario(data, pol)


def test_same_seed_same_output_other_seed_other_output(policy: Policy) -> None:
    sc = load_scenario(EXAMPLE, policy)
    a = to_json(simulate(sc, policy, seed=7))
    b = to_json(simulate(sc, policy, seed=7))
    c = to_json(simulate(sc, policy, seed=8))
    assert a == b
    assert a != c
    out = json.loads(a)
    assert set(out["tiers"]) == {"VIP", "A", "B", "C"}
    for tier in out["tiers"].values():
        assert set(tier) >= {
            "arrivals",
            "served",
            "abandoned",
            "wait_mean_s",
            "wait_p50_s",
            "wait_p90_s",
            "wait_p99_s",
            "sla_met_ratio",
        }
        assert tier["arrivals"] == tier["served"] + tier["abandoned"]
    assert 0 < out["overall"]["agent_utilization"] < 1


def test_mm1_mean_wait_within_five_percent(policy: Policy) -> None:
    """One agent, one chat at a time, no aging, VIP only: an M/M/1 queue at rho = 0.5.

    Mean wait in queue Wq = lambda / (mu (mu - lambda)) = 300 s for lambda = 6/h, mu = 12/h.
    """
    lam, mean_s, n = 6.0, 300.0, 100_000
    sc = parse_scenario(
        {
            "hours": n / lam,
            "agents": {"count": 1, "capacity": 1},
            "arrivals": {"VIP": lam},
            "service": {"distribution": "exponential", "mean_seconds": mean_s},
            "policy": {"aging_outrank_seconds": 0},
        },
        policy,
    )
    result = simulate(sc, policy, seed=1)
    vip = result.tiers["VIP"]
    mu = 3600 / mean_s
    expected = lam / (mu * (mu - lam)) * 3600
    assert abs(vip["arrivals"] - n) < 0.02 * n
    assert vip["wait_mean_s"] == pytest.approx(expected, rel=0.05)
    assert result.agent_utilization == pytest.approx(lam / mu, rel=0.03)


def test_aging_moves_waiting_from_the_low_tier_to_the_high_tiers(policy: Policy) -> None:
    strict = simulate(_scenario(policy, policy={"aging_outrank_seconds": 0}), policy, seed=3)
    aged = simulate(_scenario(policy, policy={"aging_outrank_seconds": 300}), policy, seed=3)
    # Strict order starves C; aging hands part of the wait to the higher tiers.
    assert aged.tiers["C"]["wait_p99_s"] < strict.tiers["C"]["wait_p99_s"]
    assert aged.tiers["VIP"]["wait_mean_s"] >= strict.tiers["VIP"]["wait_mean_s"]


def test_tier_limited_agents_and_patience(policy: Policy) -> None:
    sc = _scenario(
        policy,
        agents=[{"count": 1, "capacity": 1, "tiers": ["VIP"]}, {"count": 1, "capacity": 1}],
        patience={"mean_seconds": 120},
    )
    r = simulate(sc, policy, seed=2)
    assert sum(t["abandoned"] for t in r.tiers.values()) > 0
    # The VIP-only agent keeps VIP waits low while everybody else queues for the other one.
    assert r.tiers["VIP"]["wait_mean_s"] < r.tiers["C"]["wait_mean_s"]


def test_offer_mode_runs_the_same_rules(policy: Policy) -> None:
    claim = simulate(_scenario(policy), policy, seed=4)
    offer = simulate(_scenario(policy, policy={"routing_mode": "offer"}), policy, seed=4)
    assert offer.tiers.keys() == claim.tiers.keys()
    assert sum(t["served"] for t in offer.tiers.values()) > 0


def test_recommend_finds_the_smallest_count_and_says_so(policy: Policy) -> None:
    sc = _scenario(policy)
    rec = recommend(sc, policy, seed=1)
    assert rec.agents is not None and rec.result is not None
    assert rec.result.meets(rec.service_level)
    assert rec.agents == 1 or not simulate(sc, policy, seed=1, agents=rec.agents - 1).meets(
        rec.service_level
    )
    assert f"{rec.agents} agents is the smallest count" in rec.sentence({"VIP": 60.0})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"arrivals": {"Gold": 3}}, "unknown tier(s) ['Gold']"),
        ({"service": {"mean_seconds": 0}}, "service.mean_seconds"),
        ({"agents": {"count": 0}}, "at least one agent"),
        ({"hourz": 3}, "hourz"),
    ],
)
def test_bad_scenarios_name_the_key(policy: Policy, data: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=None) as exc:
        _scenario(policy, **data)
    assert message in str(exc.value)


def test_cli_json_table_and_recommend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONTACTBOT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", str(EXAMPLE), "--seed", "3", "--format", "json"]) == 0
    first = capsys.readouterr().out
    assert main(["simulate", str(EXAMPLE), "--seed", "3", "--format", "json"]) == 0
    assert capsys.readouterr().out == first
    assert json.loads(first)["seed"] == 3
    assert main(["simulate", str(EXAMPLE)]) == 0
    assert "SLA met" in capsys.readouterr().out
    assert main(["simulate", str(EXAMPLE), "--recommend", "--format", "json"]) == 0
    rec = json.loads(capsys.readouterr().out)["recommendation"]
    assert "is the smallest count" in rec["summary"]
    bad = tmp_path / "bad.toml"
    bad.write_text("hours = 1\n[arrivals]\nGold = 1\n", encoding="utf-8")
    assert main(["simulate", str(bad)]) == 2
    assert "invalid scenario" in capsys.readouterr().err


def test_a_patience_nobody_runs_out_of_changes_nothing(policy: Policy) -> None:
    """Served chats' patience timers are stale: they must not stretch the simulated period."""
    example = load_scenario(EXAMPLE, policy)
    assert example.patience is not None  # the shipped example has [patience]
    without = simulate(example.model_copy(update={"patience": None}), policy, seed=5)
    endless = example.model_copy(update={"patience": Patience(mean_seconds=1e9)})
    within = simulate(endless, policy, seed=5)
    assert sum(t["abandoned"] for t in within.tiers.values()) == 0
    assert within.tiers == without.tiers
    assert within.agent_utilization == pytest.approx(without.agent_utilization, abs=1e-4)
    assert within.simulated_seconds == pytest.approx(without.simulated_seconds)
    # Arrivals stop at 8 h; the drain is minutes, not the last stale timer's 10^9 s.
    assert within.simulated_seconds < (example.hours + 1) * 3600


@pytest.mark.parametrize(("count", "capacity"), [(1, 1), (3, 2)])
def test_utilisation_is_busy_agent_time_over_agents_times_horizon(
    policy: Policy, count: int, capacity: int
) -> None:
    handle, hours = 60.0, 8.0
    sc = parse_scenario(
        {
            "hours": hours,
            "agents": {"count": count, "capacity": capacity},
            "arrivals": {"VIP": 6 * count * capacity, "C": 30 * count * capacity},
            # A handle time of (almost exactly) one minute: busy time = served chats x 60 s.
            "service": {"distribution": "lognormal", "mean_seconds": handle, "sigma": 1e-9},
            "patience": {"mean_seconds": 1e7},
        },
        policy,
    )
    r = simulate(sc, policy, seed=1)
    served = sum(t["served"] for t in r.tiers.values())
    assert sum(t["abandoned"] for t in r.tiers.values()) == 0
    horizon = hours * 3600
    slots = count * capacity
    expected = served * handle / (slots * horizon)
    assert 0.5 < expected < 0.7
    # Chats still open at the horizon count only up to it: at most one minute per slot.
    assert r.agent_utilization == pytest.approx(expected, abs=handle / horizon)
    assert r.agent_utilization <= expected + 1e-6
