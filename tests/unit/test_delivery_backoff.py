"""The delivery queue's backoff rule (routing.delivery.enqueue.retry_delay), pure."""

from __future__ import annotations

import pytest

from routing.delivery.sending import Backoff, retry_delay


def test_429_waits_exactly_retry_after() -> None:
    assert retry_delay(429, retry_after=7, failures=1, age_seconds=0) == 7.0
    # However many failures came before: Telegram said when.
    assert retry_delay(429, retry_after=3, failures=12, age_seconds=100) == 3.0


@pytest.mark.parametrize("code", [500, 502, 503, 504, None])
def test_5xx_and_network_errors_back_off_exponentially_to_a_cap(code: int | None) -> None:
    delays = [retry_delay(code, retry_after=None, failures=n, age_seconds=10) for n in range(1, 10)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    # An outage of minutes is still retried, at the cap.
    assert retry_delay(code, retry_after=None, failures=500, age_seconds=3600) == 60.0


def test_retrying_ends_at_the_horizon() -> None:
    day = 24 * 3600.0
    assert retry_delay(502, retry_after=None, failures=3, age_seconds=day - 1) == 4.0
    assert retry_delay(502, retry_after=None, failures=3, age_seconds=day) is None
    assert retry_delay(429, retry_after=5, failures=3, age_seconds=day + 1) is None


@pytest.mark.parametrize("code", [400, 401, 403, 404, 413])
def test_client_errors_are_permanent(code: int) -> None:
    assert retry_delay(code, retry_after=None, failures=1, age_seconds=0) is None


def test_backoff_is_configurable() -> None:
    quick = Backoff(base=0.1, cap=0.5, horizon=10)
    got = [retry_delay(None, retry_after=None, failures=n, age_seconds=1, backoff=quick)
           for n in range(1, 6)]  # fmt: skip
    assert got == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert retry_delay(503, retry_after=None, failures=1, age_seconds=10, backoff=quick) is None
