"""The bot's clock: real UTC time, or a file-controlled clock for end-to-end tests.

Business rules that depend on time (SLA sweeps, survey due times, business hours, quiet
hours) all read ``clock()`` rather than ``datetime.now``. ``CONTACTBOT_CLOCK_FILE`` points the
running process at a file holding an ISO-8601 instant, so a test driving the real bot process
can move time forward without sleeping. It is a testing hook: production leaves it unset.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from routing.clock import Clock, utcnow


class FileClock:
    """Reads the instant from a file, re-reading only when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._now = utcnow()

    def __call__(self) -> datetime:
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            raw = self.path.read_text(encoding="utf-8").strip()
            now = datetime.fromisoformat(raw)
            self._now = now if now.tzinfo else now.replace(tzinfo=UTC)
            self._stamp = stamp
        return self._now


def set_file_clock(path: Path, now: datetime) -> None:
    """Move a :class:`FileClock` (used by tests)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(now.isoformat(), encoding="utf-8")
    os.replace(tmp, path)


def make_clock(clock_file: str | None) -> Clock:
    return FileClock(Path(clock_file)) if clock_file else utcnow
