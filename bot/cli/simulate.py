"""``contactbot simulate``: a simulated day of the queue for capacity planning."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from bot.cli.output import err, out
from bot.config import Settings


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from routing import simulate

    policy = settings.load_policy()
    try:
        scenario = simulate.load_scenario(args.scenario, policy)
    except simulate.ScenarioError as exc:
        err.print(f"contactbot: {exc}", markup=False)
        return 2
    seed = args.seed if args.seed is not None else scenario.seed
    targets = scenario.sla.first_response_seconds or policy.queue.sla.first_response_seconds
    extra: dict[str, Any] = {"seed": seed}
    if args.recommend:
        rec = simulate.recommend(scenario, policy, seed=seed)
        sentence = rec.sentence({t: targets[t] for t in scenario.arrivals if t in targets})
        extra["recommendation"] = {
            "agents": rec.agents,
            "service_level": rec.service_level,
            "tried": {str(k): v for k, v in sorted(rec.tried.items())},
            "summary": sentence,
        }
        if rec.result is None:
            if args.format == "json":
                out.print_json(data=extra)
            else:
                out.print(sentence)
            return 1
        result = rec.result
    else:
        result = simulate.simulate(scenario, policy, seed=seed)
    if args.format == "json":
        # Plain print: rich would wrap or colour what scripts parse.
        print(simulate.to_json(result, extra))
        return 0
    table = Table(
        title=f"Simulated {result.simulated_seconds / 3600:.1f} h, {result.agents} agents"
    )
    cols = (
        "tier",
        "arrived",
        "served",
        "gave up",
        "mean s",
        "p50 s",
        "p90 s",
        "p99 s",
        "SLA met",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "tier" else "right")

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"

    for tier, st in result.tiers.items():
        met = st["sla_met_ratio"]
        table.add_row(
            tier,
            num(st["arrivals"]),
            num(st["served"]),
            num(st["abandoned"]),
            num(st["wait_mean_s"]),
            num(st["wait_p50_s"]),
            num(st["wait_p90_s"]),
            num(st["wait_p99_s"]),
            "-" if met is None else f"{met:.1%}",
        )
    out.print(table)
    out.print(f"agent utilization: {result.agent_utilization:.1%}   seed: {seed}")
    if args.recommend:
        out.print(extra["recommendation"]["summary"])
    return 0
