"""APScheduler's warnings about a busy job (a tick skipped while the last run goes on, a
late start) come at most once per job and kind per period, with a count of those held."""

from __future__ import annotations

import logging

from bot.logs import BusyJobFilter


class _Job:
    def __init__(self, job_id: str) -> None:
        self.id = job_id

    def __str__(self) -> str:  # changes every tick, as APScheduler's does
        return f"{self.id} (next run at {id(self)})"


def _skipped(job: _Job) -> logging.LogRecord:
    return logging.LogRecord(
        "apscheduler.scheduler", logging.WARNING, __file__, 1,
        'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
        (job, 1), None,
    )  # fmt: skip


def _missed(job: _Job) -> logging.LogRecord:
    return logging.LogRecord(
        "apscheduler.executors.default", logging.WARNING, __file__, 1,
        'Run time of job "%s" was missed by %s', (job, "0:00:01"), None,
    )  # fmt: skip


def test_one_line_per_job_and_kind_per_period_with_the_count_held() -> None:
    now = [0.0]
    f = BusyJobFilter(every=600, clock=lambda: now[0])
    passed = [f.filter(_skipped(_Job("surveys"))) for _ in range(50)]
    assert passed.count(True) == 1  # 50 ticks skipped in a busy minute: one line
    assert f.filter(_skipped(_Job("queue")))  # another job has its own line
    assert f.filter(_missed(_Job("surveys")))  # and another kind
    now[0] = 601
    later = _skipped(_Job("surveys"))
    assert f.filter(later)
    assert "49 more like it" in later.getMessage()


def test_other_records_pass_untouched() -> None:
    f = BusyJobFilter(every=600, clock=lambda: 0.0)
    other = logging.LogRecord("apscheduler.scheduler", logging.WARNING, __file__, 1,
                              "Scheduler started", (), None)  # fmt: skip
    ours = logging.LogRecord("bot.app", logging.WARNING, __file__, 1,
                             "was missed by %s", ("x",), None)  # fmt: skip
    assert all(f.filter(other) for _ in range(3))
    assert all(f.filter(ours) for _ in range(3))
