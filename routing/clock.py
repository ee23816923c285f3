"""The clock type every layer takes, and the real one. Tests pass their own (see bot/clock.py
for the file clock a test can move under a running bot)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)
