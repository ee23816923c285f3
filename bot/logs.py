"""Where log lines go and how many: ``CONTACTBOT_LOG_LEVEL`` and ``CONTACTBOT_LOG_FORMAT``.

:func:`configure` is called once per process, by the command line (``contactbot run`` in
both modes, and every other command) before the command runs.

Levels. Unset (the default), contactbot's own loggers (``bot``, ``routing``, ``surveys``,
``migrations``) write INFO and up, every other library WARNING and up. Our INFO lines are
events, not heartbeats: start and stop, webhook registration, updates left from the last
stop, survey campaigns and expiries, rescoring, throttled users, delivery retries; a quiet
day is a handful of lines. The libraries' INFO lines are heartbeats: APScheduler's "Running
job ..." and "... executed successfully" for every tick of every job (about 72,000 lines a
day with the default 5 s sweeps), aiogram's "Update id=... is handled" and aiohttp's access
log for every update. Set, the level applies to every logger alike: ``INFO`` brings those
back (what ``contactbot run`` wrote before), ``WARNING`` quiets ours too, ``DEBUG`` is
everything.

Formats. ``text``: ``2026-12-09 08:00:00,123 INFO bot.app: contactbot stopped (...)``.
``json``: one object per line, ``{"time", "level", "logger", "message"}`` plus
``"exc_info"`` (the formatted traceback, one string) when there is one, for a log shipper.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
# Our packages: INFO by default. Everything else: WARNING by default.
OWN_LOGGERS = ("bot", "routing", "surveys", "migrations")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogSettings(Protocol):
    """What :func:`configure` reads (``bot.config.Settings`` has both)."""

    @property
    def log_level(self) -> str | None: ...

    @property
    def log_format(self) -> str: ...


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a traceback is one string in ``exc_info``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        # ensure_ascii: a message can hold anything (a customer's name); escapes keep each
        # record on one line in any terminal or shipper.
        return json.dumps(entry, ensure_ascii=True, default=str)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to ``stream`` if given, else to whatever ``sys.stderr`` is at the time (not the
    one at start-up), so a redirected or captured stderr gets the lines."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stderr)
        self.follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self.follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


class CancelledJobFilter(logging.Filter):
    """APScheduler cancels the jobs still running when it shuts down (every stop of the bot
    that falls on a tick) and logs each as an ERROR with a traceback ending in
    CancelledError. That is a stop, not a failure (``bot.scheduler.exclusive`` frees the
    job's period for the next run): one INFO line instead, shown when INFO is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("apscheduler.executors") or not record.exc_info:
            return True
        if not isinstance(record.exc_info[1], asyncio.CancelledError):
            return True
        record.msg = 'Job "%s" cancelled: the scheduler stopped while it ran'
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info = record.exc_text = None
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


class BusyJobFilter(logging.Filter):
    """The queue and survey jobs tick every few tenths of a second and never overlap
    (``max_instances=1``). On a busy machine a tick falls while the last run is still going
    (APScheduler: 'skipped: maximum number of running instances reached') or starts late
    ('was missed by'), each a WARNING: several lines a second, saying one thing. One line
    per job and kind every ``every`` seconds, with how many were held back since."""

    KINDS = ("maximum number of running instances", "was missed by")

    def __init__(self, every: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every = every
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("apscheduler") or record.levelno != logging.WARNING:
            return True
        template = str(record.msg)
        kind = next((k for k in self.KINDS if k in template), None)
        if kind is None or not isinstance(record.args, tuple) or not record.args:
            return True
        job = record.args[0]
        key = (str(getattr(job, "id", None) or getattr(job, "name", None) or job), kind)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{template} ({held} more like it in the last {self.every:.0f}s)"
        return True


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def configure(settings: LogSettings, stream: TextIO | None = None) -> None:
    """Set up logging from ``settings.log_level`` / ``settings.log_format``.

    Idempotent: calling it again replaces the handler installed before (the tests call the
    command line many times in one process). ``stream`` is for tests; default stderr."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_contactbot", False)]:
        root.removeHandler(old)
        old.close()
    handler = _StderrHandler(stream)
    handler._contactbot = True  # type: ignore[attr-defined]
    handler.setFormatter(make_formatter(settings.log_format))
    handler.addFilter(CancelledJobFilter())
    handler.addFilter(BusyJobFilter())
    root.addHandler(handler)
    # Python's warnings (a library's DeprecationWarning, SQLAlchemy's SAWarning) go through
    # the same handler and format: no stray non-JSON lines in a JSON log. (Released first:
    # capturing again over a stale capture would do nothing.)
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    level = settings.log_level
    root.setLevel(level or logging.WARNING)
    for name in OWN_LOGGERS:
        # Unset: ours one step louder than the rest. Set: ours follow the root.
        logging.getLogger(name).setLevel(logging.INFO if level is None else logging.NOTSET)
