"""Benchmark: the queue simulator's speed and its M/M/1 accuracy.

    python -m bench simulate [--size tiny|default] [--json FILE]

1. Speed: the shipped scenario's mix (docs/scenario.example.toml: four tiers, two agent
   groups, lognormal handle times, abandonment, aging) scaled to 100,000 arrivals; goal
   under 60 s (issue 5).
2. Accuracy: one agent, no aging, VIP only, exponential arrivals and service at rho = 0.5;
   the mean wait against the M/M/1 formula lambda / (mu (mu - lambda)), over several seeds,
   so the spread of the estimate is visible (the unit test pins one seed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import Figure
from routing.policy.root import Policy
from routing.simulate import load_scenario, parse_scenario, simulate

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Size:
    arrivals: int
    seeds: int


SIZES = {"tiny": Size(arrivals=2_000, seeds=2), "default": Size(arrivals=100_000, seeds=5)}


def speed(size: Size, policy: Policy) -> tuple[float, int]:
    base = load_scenario(ROOT / "docs" / "scenario.example.toml", policy)
    per_hour = sum(base.arrivals.values())
    scenario = base.model_copy(update={"hours": size.arrivals / per_hour})
    t = time.perf_counter()
    result = simulate(scenario, policy, seed=1)
    seconds = time.perf_counter() - t
    arrivals = sum(int(v["arrivals"]) for v in result.tiers.values())
    print(
        f"   mixed scenario: {arrivals:,} arrivals, {result.events:,} events in {seconds:.2f} s "
        f"({arrivals / seconds:,.0f} arrivals/s)"
    )
    return seconds, arrivals


def mm1(size: Size, policy: Policy) -> float:
    lam_h, mean_s = 6.0, 300.0  # rho = 0.5
    scenario = parse_scenario(
        {
            "hours": size.arrivals / lam_h,
            "agents": {"count": 1, "capacity": 1},
            "arrivals": {policy.tier_names[0]: lam_h},
            "service": {"mean_seconds": mean_s},
            "policy": {"aging_outrank_seconds": 0},
        },
        policy,
    )
    mu_h = 3600 / mean_s
    expected = lam_h / (mu_h * (mu_h - lam_h)) * 3600
    worst = 0.0
    for seed in range(1, size.seeds + 1):
        got = simulate(scenario, policy, seed=seed).tiers[policy.tier_names[0]]["wait_mean_s"]
        err = got / expected - 1
        worst = max(worst, abs(err))
        print(f"   M/M/1 seed {seed}: mean wait {got:.1f} s vs {expected:.1f} s ({err:+.2%})")
    return worst


async def run(size_name: str) -> list[Figure]:
    size = SIZES[size_name]
    policy = Policy()
    seconds, arrivals = speed(size, policy)
    worst = mm1(size, policy)
    return [
        Figure("simulate_seconds", seconds, "s", f"< 60 for {arrivals:,} arrivals", seconds < 60),
        Figure("simulate_arrivals_per_s", arrivals / seconds, "arrivals/s"),
        Figure("simulate_mm1_worst_error", worst, "ratio", "<= 0.05", worst <= 0.05),
    ]
