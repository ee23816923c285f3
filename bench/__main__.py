"""The benchmark suite: ``python -m bench all|pipeline|cpu|latency|claims|memory|import|simulate``
(and ``campaign``, the survey outbox, and ``chaos``, every message delivered through kills,
an outage and flood limits, each run on its own: chaos takes over ten minutes per backend).

    python -m bench all [--size tiny|default] [--json FILE]
    python -m bench cpu [--path mix|self_text|menu_press|...]   # the mix and each handler path
    python -m bench pipeline [--backend sqlite|postgresql|both]
    python -m bench chaos [--size tiny|default] [--backend sqlite|postgresql|both]

Each benchmark prints its progress and figures; the run ends with one summary line per
figure (``name: value unit (goal ...: met|NOT met)``). ``--json`` writes the same figures
with the machine, command and date. ``--size tiny`` is the smoke size the tests use.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import claims, cpu, latency, memory, pipeline, simulate
from bench.common import Figure, machine, write_json

Runner = Callable[[str], Awaitable[list[Figure]]]

BENCHMARKS: dict[str, Runner] = {
    "pipeline": pipeline.run,
    "cpu": cpu.run,
    "latency": latency.run,
    "claims": claims.run,
    "memory": memory.run,
    "simulate": simulate.run,
}


async def _import_orders(size: str) -> list[Figure]:
    """Another engineer's import benchmark, run through its own ``main`` in a thread."""
    import contextlib
    import io
    import re

    from bench import import_orders

    argv = ["--rows", "2000", "--customers", "200"] if size == "tiny" else []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        await asyncio.to_thread(import_orders.main, argv)
    text = out.getvalue()
    print(text, end="")
    return [
        Figure(f"import_{m.group(1)}", float(m.group(2)), "rows/s")
        for m in re.finditer(r"^(\w+)_rows_per_s: (\d+)", text, re.M)
    ]


BENCHMARKS["import"] = _import_orders


async def _campaign(size: str) -> list[Figure]:
    """A survey campaign through the outbox and the sender (``python -m bench.campaign``)."""
    from bench import campaign

    return await campaign.run_size(size)


BENCHMARKS["campaign"] = _campaign


async def _chaos(size: str, backend: str = "both") -> list[Figure]:
    """Kills, an outage and 429s while customers and agents talk (bench/chaos.py)."""
    from bench import chaos

    return await chaos.run(size, backend=backend)


BENCHMARKS["chaos"] = _chaos


async def _scaleout(size: str) -> list[Figure]:
    """Three webhook instances on PostgreSQL + Redis, one SIGKILLed, one restarted
    (bench/scaleout.py; not part of ``all``: it needs PostgreSQL and Redis)."""
    from bench import scaleout

    return await scaleout.run(size)


BENCHMARKS["scaleout"] = _scaleout


async def _rescore(size: str, backend: str = "sqlite") -> list[Figure]:
    """Rescoring 1,000,000 customers / 10,000,000 orders (bench/rescore.py; not part of
    ``all``: generating the data set alone takes minutes). Goal: under 20 s on SQLite."""
    from bench import rescore

    return await rescore.run(size, backend, repeat=1 if size == "tiny" else 3)


BENCHMARKS["rescore"] = _rescore
ALL = ("pipeline", "cpu", "latency", "claims", "memory", "import", "simulate")


def run(names: list[str], size: str) -> list[Figure]:
    figures: list[Figure] = []
    for name in names:
        print(f"== {name} ({size})", flush=True)
        t = time.perf_counter()
        figures += asyncio.run(BENCHMARKS[name](size))
        print(f"   ({time.perf_counter() - t:.1f}s)", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("benchmark", choices=["all", *BENCHMARKS])
    parser.add_argument("--size", choices=["tiny", "default"], default="default")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgresql", "both"],
        default=None,
        help="chaos and pipeline: the database(s) to run on (PostgreSQL: CONTACTBOT_BENCH_PG_URL;"
        " pipeline falls back to CONTACTBOT_TEST_PG_URL); chaos defaults to both, pipeline to"
        " sqlite, or both when a PostgreSQL URL is set",
    )
    parser.add_argument(
        "--path",
        choices=["mix", *cpu.PATHS],
        default=None,
        help="cpu only: measure this one handler path (or the standard mix) against the floor",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        metavar="N",
        help="latency only: seed N closed chats of history (a bot that has been serving)",
    )
    args = parser.parse_args(argv)
    names = list(ALL) if args.benchmark == "all" else [args.benchmark]
    started = datetime.now(UTC)
    if args.benchmark == "chaos":
        BENCHMARKS["chaos"] = functools.partial(_chaos, backend=args.backend or "both")
    if args.benchmark in ("pipeline", "all"):
        BENCHMARKS["pipeline"] = functools.partial(pipeline.run, backend=args.backend)
    if args.history:
        BENCHMARKS["latency"] = functools.partial(latency.run, history=args.history)
    if args.path is not None:
        BENCHMARKS["cpu"] = functools.partial(cpu.run, path=args.path)
    if args.benchmark == "rescore":
        BENCHMARKS["rescore"] = functools.partial(_rescore, backend=args.backend or "sqlite")
    figures = run(names, args.size)
    print("== summary")
    for f in figures:
        print(f.line())
    if args.json:
        meta = {
            "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": started.isoformat(timespec="seconds"),
            "machine": machine(),
        }
        write_json(args.json, figures, meta)
        print(f"figures written to {args.json}")
    # A missed speed goal is a finding, not a failure; a double claim is a bug.
    from bench.campaign import CORRECTNESS
    from bench.chaos import is_correctness

    broken = [
        f
        for f in figures
        if ("double_claims" in f.name or f.name in CORRECTNESS or is_correctness(f))
        and f.met is False
    ]
    # scaleout: nothing lost, doubled, reordered, over capacity (its "== 0" figures).
    broken += [f for f in figures if f.name.startswith("scaleout_") and f.met is False]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
