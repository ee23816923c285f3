"""Capacity planning: a discrete-event simulation of the queue on a virtual clock.

It runs the production rules, not a model of them: the order is routing.queue.priority's virtual
arrival key, who may take a chat is routing.queue.eligibility's one check (``refusal``: tier,
capacity; simulated chats hold no reservation and the period is within business hours), the
agent for a chat is ``eligibility.pick_agent`` (eligible, least loaded), and the SLA targets
come from the policy's ``[queue.sla]``. Nothing sleeps and nothing touches a database or
Telegram. A seed reproduces a run exactly (seeded ``random.Random`` streams, consumed in a
fixed order: one for arrivals and handle times, one for patience, so that a patience nobody
runs out of changes nothing).

Modelling choices (docs/queue.md): an agent answers a chat the moment they take it (the
simulated first response is the assignment), a chat's handle time does not depend on how many
chats its agent holds, and a customer whose patience runs out before an agent takes the chat
abandons it. Agent utilisation is measured over the horizon (the hours arrivals come in):
slot-time spent on chats between 0 and the horizon over slots x horizon; the drain after it
counts in ``simulated_seconds`` only. Within one tier the virtual arrival is arrival + a
constant, so each tier's waiting line is a FIFO deque and the best chat is the smallest key
among the tier heads: O(tiers) per decision, which is what makes 100,000 arrivals take about
a second.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from routing.policy.base import Strict
from routing.policy.root import Policy
from routing.queue import priority
from routing.queue.eligibility import REFUSED_TIER, AgentSlot, Chat, pick_agent, refusal


class ScenarioError(Exception):
    """A scenario file that cannot be used; the message names the key."""


class AgentGroup(Strict):
    count: int = Field(ge=0, le=100_000)
    capacity: int = Field(default=1, ge=1, le=100)
    # Tiers this group serves; absent = all.
    tiers: tuple[str, ...] | None = None


class Service(Strict):
    distribution: Literal["exponential", "lognormal"] = "exponential"
    mean_seconds: float = Field(gt=0)
    # lognormal only: the standard deviation of the log of the handle time.
    sigma: float = Field(default=0.5, gt=0)


class Patience(Strict):
    # Customers give up after an exponential time with this mean (no key: nobody gives up).
    mean_seconds: float = Field(gt=0)


class PolicyOverrides(Strict):
    aging_outrank_seconds: float | None = Field(default=None, ge=0)
    routing_mode: Literal["claim", "offer"] | None = None


class SlaOverrides(Strict):
    first_response_seconds: dict[str, float] | None = None
    service_level: float | None = Field(default=None, gt=0, le=1)


class Scenario(Strict):
    hours: float = Field(gt=0)
    agents: tuple[AgentGroup, ...]
    # Poisson arrival rate per hour, per tier name.
    arrivals: dict[str, float]
    service: Service
    patience: Patience | None = None
    policy: PolicyOverrides = PolicyOverrides()
    sla: SlaOverrides = SlaOverrides()
    seed: int = 1

    @field_validator("agents", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        # [agents] (one group) or [[agents]] (several).
        return [value] if isinstance(value, dict) else value

    @field_validator("arrivals")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        for tier, rate in value.items():
            if rate < 0:
                raise ValueError(f"{tier}: an arrival rate cannot be negative")
        if not any(r > 0 for r in value.values()):
            raise ValueError("at least one tier needs an arrival rate above 0")
        return value

    def check(self, policy: Policy) -> None:
        names = set(policy.tier_names)
        for where, tiers in [("arrivals", self.arrivals)] + [
            (f"agents[{i}].tiers", g.tiers or ()) for i, g in enumerate(self.agents)
        ]:
            unknown = sorted(set(tiers) - names)
            if unknown:
                raise ScenarioError(
                    f"{where}: unknown tier(s) {unknown}; the policy's tiers are "
                    f"{list(policy.tier_names)}"
                )
        if not any(g.count for g in self.agents):
            raise ScenarioError("agents: at least one agent is needed")


def load_scenario(path: Path, policy: Policy) -> Scenario:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return parse_scenario(data, policy, str(path))


def parse_scenario(data: dict[str, Any], policy: Policy, source: str = "<scenario>") -> Scenario:
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        lines = [f"{source}: invalid scenario"]
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
            lines.append(f"  {loc}: {e['msg']}")
        raise ScenarioError("\n".join(lines)) from None
    try:
        scenario.check(policy)
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: {exc}") from None
    return scenario


# --- results ----------------------------------------------------------------------------


@dataclass
class TierStats:
    arrivals: int = 0
    served: int = 0
    abandoned: int = 0
    met: int = 0
    waits: list[float] = field(default_factory=list)

    def as_dict(self, target: float | None) -> dict[str, Any]:
        waits = sorted(self.waits)
        decided = self.served + self.abandoned
        return {
            "arrivals": self.arrivals,
            "served": self.served,
            "abandoned": self.abandoned,
            "wait_mean_s": round(sum(waits) / len(waits), 3) if waits else None,
            "wait_p50_s": _percentile(waits, 0.50),
            "wait_p90_s": _percentile(waits, 0.90),
            "wait_p99_s": _percentile(waits, 0.99),
            "sla_target_s": target,
            # Abandoned chats count as missed; no target or no chats: null.
            "sla_met_ratio": (
                round(self.met / decided, 4) if target is not None and decided else None
            ),
        }


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    i = max(math.ceil(q * len(sorted_values)) - 1, 0)
    return round(sorted_values[i], 3)


@dataclass
class Result:
    agents: int
    tiers: dict[str, dict[str, Any]]
    agent_utilization: float
    simulated_seconds: float
    events: int

    def as_dict(self) -> dict[str, Any]:
        total = {
            k: sum(t[k] for t in self.tiers.values()) for k in ("arrivals", "served", "abandoned")
        }
        return {
            "agents": self.agents,
            "tiers": self.tiers,
            "overall": {
                **total,
                "agent_utilization": round(self.agent_utilization, 4),
                "simulated_hours": round(self.simulated_seconds / 3600, 3),
            },
        }

    def meets(self, service_level: float) -> bool:
        return all(
            t["sla_met_ratio"] is None or t["sla_met_ratio"] >= service_level
            for t in self.tiers.values()
        )


# --- the engine -------------------------------------------------------------------------

_DONE = 0  # an agent's chat ends
_ABANDON = 1  # a waiting customer's patience ends


def simulate(
    scenario: Scenario, policy: Policy, *, seed: int | None = None, agents: int | None = None
) -> Result:
    """Run one simulated period. ``agents`` replaces the first group's count (--recommend)."""
    run_seed = scenario.seed if seed is None else seed
    rng = random.Random(run_seed)  # arrivals and handle times
    # Patience has a stream of its own: [patience] must not change the arrivals or the handle
    # times, so with a patience nobody runs out of, a run is the run without it.
    patience_rng = random.Random(f"patience:{run_seed}")
    aging = (
        scenario.policy.aging_outrank_seconds
        if scenario.policy.aging_outrank_seconds is not None
        else policy.queue.aging_outrank_seconds
    )
    mode = scenario.policy.routing_mode or policy.queue.routing_mode
    targets = scenario.sla.first_response_seconds or policy.queue.sla.first_response_seconds
    tier_names = list(policy.tier_names)
    head_start = {t: priority.queue_key(policy.rank(t), 0.0, aging) for t in tier_names}

    groups = list(scenario.agents)
    if agents is not None:
        groups[0] = groups[0].model_copy(update={"count": agents})
    slots: list[AgentSlot] = []
    for g in groups:
        tiers = frozenset(g.tiers) if g.tiers is not None else None
        for _ in range(g.count):
            slots.append(AgentSlot(len(slots), 0, g.capacity, tiers))
    # The tiers each agent serves (the check's tier step; capacity is looked at per chat).
    serves_tiers = [[t for t in tier_names if refusal(s, Chat(t)) != REFUSED_TIER] for s in slots]
    total_slots = sum(s.max_chats for s in slots)

    rates = [(t, scenario.arrivals.get(t, 0.0) / 3600.0) for t in tier_names]
    total_rate = sum(r for _, r in rates)
    cum: list[tuple[float, str]] = []
    acc = 0.0
    for t, r in rates:
        acc += r / total_rate
        cum.append((acc, t))
    horizon = scenario.hours * 3600.0

    svc = scenario.service
    if svc.distribution == "exponential":
        svc_rate = 1.0 / svc.mean_seconds

        def service_time() -> float:
            return rng.expovariate(svc_rate)
    else:
        mu = math.log(svc.mean_seconds) - svc.sigma**2 / 2

        def service_time() -> float:
            return rng.lognormvariate(mu, svc.sigma)

    patience_rate = 1.0 / scenario.patience.mean_seconds if scenario.patience else 0.0

    stats = {t: TierStats() for t in tier_names}
    lines: dict[str, deque[int]] = {t: deque() for t in tier_names}
    # Per chat: arrival time, tier; waiting flag cleared when taken or abandoned.
    arrival_at: list[float] = []
    tier_of: list[str] = []
    waiting: list[bool] = []
    events: list[tuple[float, int, int, int]] = []  # (time, seq, kind, who)
    seq = 0
    busy_time = 0.0
    n_events = 0

    def best_waiting(tiers: list[str]) -> int | None:
        best: int | None = None
        best_key = (math.inf, math.inf, 0)
        for t in tiers:
            line = lines[t]
            while line and not waiting[line[0]]:
                line.popleft()  # taken elsewhere or abandoned
            if line:
                cid = line[0]
                k = (arrival_at[cid] + head_start[t], arrival_at[cid], cid)
                if k < best_key:
                    best, best_key = cid, k
        return best

    def start(slot: AgentSlot, cid: int, now: float) -> None:
        nonlocal seq, busy_time
        waiting[cid] = False
        slot.load += 1
        slot.last_assigned = now
        t = tier_of[cid]
        st = stats[t]
        wait = now - arrival_at[cid]
        st.served += 1
        st.waits.append(wait)
        target = targets.get(t)
        if target is not None and wait <= target:
            st.met += 1
        d = service_time()
        # Agent time within the horizon: the part of a chat after it belongs to the drain.
        busy_time += max(0.0, min(now + d, horizon) - now)
        seq += 1
        heapq.heappush(events, (now + d, seq, _DONE, slot.id))

    def free_slot(slot: AgentSlot, now: float) -> None:
        if mode == "claim":
            # The agent pulls the best chat they may take (/next).
            cid = best_waiting(serves_tiers[slot.id])
            if cid is not None:
                start(slot, cid, now)
            return
        # offer: the best waiting chat goes to the least-loaded eligible agent.
        while True:
            cid = best_waiting(tier_names)
            if cid is None:
                return
            target_slot = pick_agent(slots, tier_of[cid])
            if target_slot is None:
                # Nobody can take the head chat; look for one this agent may take instead.
                cid = best_waiting(serves_tiers[slot.id])
                if cid is not None and pick_agent([slot], tier_of[cid]) is not None:
                    start(slot, cid, now)
                return
            start(target_slot, cid, now)

    now = 0.0
    next_arrival = rng.expovariate(total_rate)
    while True:
        if events and (events[0][0] <= next_arrival or next_arrival > horizon):
            at, _, kind, who = heapq.heappop(events)
            if kind == _ABANDON and not waiting[who]:
                # A stale patience timer: the chat was taken already. Nothing happens, so it
                # must not move the clock (it would stretch the period past the last event).
                continue
            now = at
            n_events += 1
            if kind == _DONE:
                slot = slots[who]
                slot.load -= 1
                free_slot(slot, now)
            else:
                waiting[who] = False
                stats[tier_of[who]].abandoned += 1
            continue
        if next_arrival > horizon:
            break
        now = next_arrival
        n_events += 1
        u = rng.random()
        tier = next(t for c, t in cum if u <= c) if u <= cum[-1][0] else cum[-1][1]
        cid = len(arrival_at)
        arrival_at.append(now)
        tier_of.append(tier)
        waiting.append(True)
        stats[tier].arrivals += 1
        patience = patience_rng.expovariate(patience_rate) if patience_rate else math.inf
        next_arrival = now + rng.expovariate(total_rate)
        taker = pick_agent(slots, tier)
        if taker is not None and best_waiting([tier]) is None:
            start(taker, cid, now)
            continue
        lines[tier].append(cid)
        if patience != math.inf:
            seq += 1
            heapq.heappush(events, (now + patience, seq, _ABANDON, cid))

    # The period: the horizon, or the last chat's end if the queue drains after it.
    end = max(now, horizon)
    # Chats still waiting when the last agent finished had nobody eligible to serve them.
    for cid, w in enumerate(waiting):
        if w:
            stats[tier_of[cid]].abandoned += 1
    utilization = busy_time / (total_slots * horizon) if total_slots else 0.0
    return Result(
        agents=len(slots),
        tiers={
            t: stats[t].as_dict(targets.get(t))
            for t in tier_names
            if t in scenario.arrivals or stats[t].arrivals
        },
        agent_utilization=utilization,
        simulated_seconds=end,
        events=n_events,
    )


@dataclass(frozen=True)
class Recommendation:
    agents: int | None
    service_level: float
    result: Result | None
    tried: dict[int, bool]

    def sentence(self, targets: dict[str, float]) -> str:
        pct = f"{self.service_level:.0%}"
        if self.agents is None:
            return (
                f"No agent count up to {max(self.tried)} meets every tier's first-response "
                f"target for {pct} of chats."
            )
        goals = ", ".join(f"{t} within {targets[t]:g} s" for t in targets)
        total = self.result.agents if self.result is not None else self.agents
        group = "" if total == self.agents else f" ({self.agents} in the first agents group)"
        return (
            f"{total} agents{group} is the smallest count that answers {pct} of every tier's "
            f"chats within its first-response target ({goals})."
        )


def recommend(
    scenario: Scenario, policy: Policy, *, seed: int | None = None, ceiling: int = 1000
) -> Recommendation:
    """The smallest first-group agent count whose run meets every tier's SLA.

    Every run uses the same seed (common random numbers), so counts are compared on the same
    arrivals; search by doubling, then bisection.
    """
    level = scenario.sla.service_level or policy.queue.sla.service_level
    tried: dict[int, bool] = {}
    results: dict[int, Result] = {}

    def ok(n: int) -> bool:
        if n not in tried:
            results[n] = simulate(scenario, policy, seed=seed, agents=n)
            tried[n] = results[n].meets(level)
        return tried[n]

    hi = 1
    while not ok(hi):
        if hi >= ceiling:
            return Recommendation(None, level, None, tried)
        hi = min(hi * 2, ceiling)
    lo = hi // 2  # fails (or 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return Recommendation(hi, level, results[hi], tried)


def to_json(result: Result, extra: dict[str, Any] | None = None) -> str:
    return json.dumps({**result.as_dict(), **(extra or {})}, indent=2, sort_keys=False)
