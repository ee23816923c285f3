"""Running ``python -m bot`` as users and scripts do (a subprocess, its output a pipe), for
tests/integration/test_cli_trust*.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import Agent, Customer

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ANSI = "\x1b[31mRed"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=base | {"CONTACTBOT_PREFLIGHT_TIMEOUT": "5"} | env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,  # a cold start imports every command (seconds on a loaded CI box)
        check=False,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], proc.stderr
    return lines[0]


def _seed(url: str, agents: list[tuple[int, str]], customers: list[tuple[str, str]]) -> None:
    """Rows as an older version (or another tool) may have stored them: unvalidated."""

    async def go() -> None:
        engine = make_engine(url)
        try:
            await upgrade(engine)
            async with make_sessionmaker(engine)() as s, s.begin():
                for tg, name in agents:
                    s.add(Agent(telegram_id=tg, name=name, role="agent", created_at=T0))
                for external_id, name in customers:
                    s.add(
                        Customer(
                            external_id=external_id,
                            name=name,
                            tier="C",
                            created_at=T0,
                            updated_at=T0,
                        )
                    )
        finally:
            await engine.dispose()

    asyncio.run(go())
