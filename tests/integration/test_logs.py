"""Logging (bot/logs.py): CONTACTBOT_LOG_LEVEL and CONTACTBOT_LOG_FORMAT are honoured, the
default is quiet, and a bad value is a one-line configuration error.

The volume test runs the real scheduler (``make_scheduler``: the queue, surveys and tier
notice jobs on a SQLite database and the fake Bot API) with its intervals shortened to
0.2 s, counts the lines written per job run, and scales them to a day at the default
intervals. See its figures with

    pytest -n 0 -s -q tests/integration/test_logs.py -k volume
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)
from apscheduler.triggers.interval import IntervalTrigger

from bot import scheduler as scheduler_module
from bot.app import make_bot
from bot.cli import main
from bot.config import ConfigError, Settings, load_settings
from bot.logs import OWN_LOGGERS, configure
from bot.scheduler import make_scheduler
from routing.clock import utcnow
from routing.policy.root import parse_policy
from routing.store import db as store
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI

DAY = 86_400.0
SCHED = "apscheduler.executors.default"


@dataclass
class Log:
    level: str | None = None
    format: str = "text"

    @property
    def log_level(self) -> str | None:
        return self.level

    @property
    def log_format(self) -> str:
        return self.format


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure() changes process-wide state: put it back for the next test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    own = {name: logging.getLogger(name).level for name in (*OWN_LOGGERS, "apscheduler")}
    yield
    logging.captureWarnings(False)
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    for name, lvl in own.items():
        logging.getLogger(name).setLevel(lvl)


def _emit_samples() -> None:
    logging.getLogger("bot.app").info("contactbot stopped")
    logging.getLogger("routing.store.db").debug("a debug line of ours")
    logging.getLogger(SCHED).info('Running job "queue"')
    logging.getLogger("aiogram.event").warning("a library warning")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("surveys.push").exception("send failed")


def _records(out: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_default_is_ours_at_info_the_rest_at_warning() -> None:
    out = io.StringIO()
    configure(Log(), out)
    _emit_samples()
    text = out.getvalue()
    assert "INFO bot.app: contactbot stopped" in text
    assert "WARNING aiogram.event: a library warning" in text
    assert "Running job" not in text and "a debug line" not in text
    assert "Traceback" in text and "ValueError: boom" in text
    first = text.splitlines()[0]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO bot\.app: contactbot stopped", first
    )


@pytest.mark.parametrize(
    ("level", "shown", "hidden"),
    [
        ("INFO", {"bot.app", SCHED, "aiogram.event", "surveys.push"}, {"routing.store.db"}),
        ("WARNING", {"aiogram.event", "surveys.push"}, {"bot.app", SCHED}),
        ("ERROR", {"surveys.push"}, {"bot.app", "aiogram.event"}),
        ("DEBUG", {"bot.app", "routing.store.db", SCHED}, set()),
    ],
)  # fmt: skip
def test_a_set_level_applies_to_every_logger(level: str, shown: set[str], hidden: set[str]) -> None:
    out = io.StringIO()
    configure(Log(level, "json"), out)
    _emit_samples()
    loggers = {r["logger"] for r in _records(out)}
    assert shown <= loggers, loggers
    assert not hidden & loggers, loggers


def test_json_is_one_object_per_line() -> None:
    out = io.StringIO()
    configure(Log(None, "json"), out)
    _emit_samples()
    logging.getLogger("bot.x").warning("two\nlines and a name: Łukasz 李")
    records = _records(out)  # every line parses
    assert len(records) == len(out.getvalue().splitlines()) == 4
    for r in records:
        assert {"time", "level", "logger", "message"} <= r.keys()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", r["time"])
    info = records[0]
    assert (info["level"], info["logger"], info["message"]) == (
        "INFO",
        "bot.app",
        "contactbot stopped",
    )
    assert "exc_info" not in info
    failed = next(r for r in records if r["logger"] == "surveys.push")
    assert failed["level"] == "ERROR" and failed["message"] == "send failed"
    assert failed["exc_info"].startswith("Traceback") and "ValueError: boom" in failed["exc_info"]
    assert records[-1]["message"] == "two\nlines and a name: Łukasz 李"


def test_python_warnings_are_log_records() -> None:
    out = io.StringIO()
    configure(Log(None, "json"), out)
    warnings.warn("a library's warning", UserWarning, stacklevel=1)
    [record] = _records(out)
    assert (record["level"], record["logger"]) == ("WARNING", "py.warnings")
    assert "UserWarning: a library's warning" in record["message"]


def test_configure_again_replaces_its_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure(Log(), first)
    configure(Log(None, "json"), second)
    logging.getLogger("bot.app").info("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


def test_settings_read_and_normalise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTBOT_LOG_LEVEL", " debug ")
    monkeypatch.setenv("CONTACTBOT_LOG_FORMAT", "JSON")
    s = load_settings()
    assert (s.log_level, s.log_format) == ("DEBUG", "json")
    monkeypatch.setenv("CONTACTBOT_LOG_LEVEL", "")  # `CONTACTBOT_LOG_LEVEL=` in an env file
    monkeypatch.delenv("CONTACTBOT_LOG_FORMAT")
    s = load_settings()
    assert (s.log_level, s.log_format) == (None, "text")
    assert "log_level" in Settings.model_fields and "log_format" in Settings.model_fields


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        (
            "CONTACTBOT_LOG_LEVEL",
            "LOUD",
            "contactbot: CONTACTBOT_LOG_LEVEL: 'LOUD' is not a log level: "
            "use one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            "CONTACTBOT_LOG_FORMAT",
            "xml",
            "contactbot: CONTACTBOT_LOG_FORMAT: 'xml' is not a log format: use text or json",
        ),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_and_exit_2(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    var: str, value: str, expected: str,
) -> None:  # fmt: skip
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError):
        load_settings()
    assert main(["agents", "list"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == expected
    assert captured.out == ""


def test_the_cli_logs_to_the_stderr_of_the_moment(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONTACTBOT_LOG_FORMAT", "json")
    assert main(["agents", "list"]) == 0
    capsys.readouterr()
    logging.getLogger("bot.cli").info("after the command")
    line = capsys.readouterr().err.strip()
    assert json.loads(line)["message"] == "after the command"


# ------------------------------------------------------------------ volume over a day


def _default_runs_per_day() -> dict[str, float]:
    """Runs a day of each interval job at the default policy (the jobs a running bot has)."""
    policy = parse_policy({})
    sched = make_scheduler(None, policy, object(), utcnow)  # type: ignore[arg-type]
    return {
        job.id: DAY / job.trigger.interval.total_seconds()
        for job in sched.get_jobs()
        if isinstance(job.trigger, IntervalTrigger)
    }


async def _lines_per_run(
    tmp_path: Path, log: Log, seconds: float = 3.0
) -> tuple[int, list[dict[str, str]]]:
    """Run the real scheduler at 0.2 s intervals for ``seconds``; the job runs and the lines."""
    out = io.StringIO()
    configure(log, out)
    policy = parse_policy(
        {
            "scoring": {"timezone": "UTC"},
            "queue": {"sweep_seconds": 0.2},
            "surveys": {"sweep_seconds": 0.2, "nps": {"campaigns": []}},
        }
    )
    engine = store.make_engine(f"sqlite+aiosqlite:///{tmp_path / f'volume-{log.level}.db'}")
    await store.upgrade(engine)
    submitted = finished = 0

    def count(event: JobEvent) -> None:
        nonlocal submitted, finished
        if event.code == EVENT_JOB_SUBMITTED:
            submitted += 1
        else:
            finished += 1

    async with FakeBotAPI() as api:
        bot = make_bot(DEFAULT_TOKEN, api.url)
        sched = make_scheduler(store.make_sessionmaker(engine), policy, bot, utcnow)
        sched.add_listener(count, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        sched.start()
        out.seek(0)  # count from here: start-up lines are once per process, not per run
        out.truncate()
        await asyncio.sleep(seconds)
        sched.pause()  # no new runs; the ones under way finish and log
        for _ in range(100):
            if finished == submitted:
                break
            await asyncio.sleep(0.05)
        sched.shutdown(wait=False)
        await bot.session.close()
    runs = finished
    # The test's own pause and stop are not part of the steady state.
    ours = ("Paused scheduler job processing", "Scheduler has been shut down")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    await engine.dispose()
    return runs, [r for r in records if r["message"] not in ours]


async def test_volume_apscheduler_per_job_lines_are_gone_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    per_day = _default_runs_per_day()
    monkeypatch.setattr(scheduler_module, "NOTICE_SWEEP_SECONDS", 0.2)
    assert set(per_day) >= {"queue", "surveys", "tier_notices"}, per_day
    runs_day = sum(per_day.values())

    # Before: every logger at INFO, as `contactbot run` configured it (CONTACTBOT_LOG_LEVEL=INFO).
    runs_before, before = await _lines_per_run(tmp_path, Log("INFO", "json"))
    sched_before = [r for r in before if r["logger"].startswith("apscheduler")]
    assert runs_before >= 10, runs_before
    running = [r for r in sched_before if r["message"].startswith("Running job")]
    done = [r for r in sched_before if "executed successfully" in r["message"]]
    assert len(running) >= runs_before and len(done) >= runs_before

    # After: the default.
    runs_after, after = await _lines_per_run(tmp_path, Log(None, "json"))
    assert runs_after >= 10, runs_after
    # Jobs every 0.2 s here (every 5 s and more by default): on a busy machine a run can
    # still be going when the next is due, and APScheduler warns that it skipped one. That
    # is this test's pace, not a line per run the defaults would write.
    after = [r for r in after if "maximum number of running instances" not in r["message"]]
    sched_info = [
        r
        for r in after
        if r["logger"].startswith("apscheduler") and r["level"] in ("DEBUG", "INFO")
    ]
    assert sched_info == []
    # Anything left (a library's warning because this machine is busy, say) is far below a
    # line per run.
    assert len(after) <= runs_after / 10, after

    before_day = len(before) / runs_before * runs_day
    after_day = len(after) / runs_after * runs_day
    print(
        f"\nlog lines per job run: {len(before) / runs_before:.2f} at INFO ({runs_before} runs), "
        f"{len(after) / runs_after:.2f} by default ({runs_after} runs); "
        f"{runs_day:,.0f} job runs a day at the default intervals "
        f"({', '.join(f'{k} {v:,.0f}' for k, v in sorted(per_day.items()))}): "
        f"about {before_day:,.0f} lines a day before, {after_day:,.0f} by default"
    )
    assert before_day > 50_000
    assert after_day < 100


@pytest.mark.parametrize(("level", "lines"), [(None, 0), ("INFO", 1)])
async def test_a_job_cancelled_by_the_stop_is_not_an_error(level: str | None, lines: int) -> None:
    """A stop that falls on a tick: APScheduler cancels the running job and would log an
    ERROR with a traceback; it is one INFO line (shown only when INFO is)."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    out = io.StringIO()
    configure(Log(level, "json"), out)
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(30)

    sched = AsyncIOScheduler(timezone="UTC")
    sched.add_job(slow, "interval", seconds=60, next_run_time=datetime.now(UTC), id="slow")
    sched.start()
    await asyncio.wait_for(started.wait(), 10)
    out.seek(0)
    out.truncate()
    sched.shutdown(wait=False)  # as bot/app.py stops it
    await asyncio.sleep(0.1)
    records = [r for r in _records(out) if "Scheduler has been shut down" not in r["message"]]
    assert len(records) == lines, records
    for r in records:
        assert r["level"] == "INFO" and "cancelled" in r["message"] and "exc_info" not in r
