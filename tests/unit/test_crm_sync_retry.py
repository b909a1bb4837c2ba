"""The outbox retry policy and the reading of CRM answers: pure, no clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_sync.connector import classify
from crm_sync.retry import DeadLetter, Failure, RetryAt, RetryPolicy

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=1, factor=2, cap_s=30, max_attempts=10, jitter=0)
    assert [policy.delay_s(n, 0.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_jitter_only_shortens() -> None:
    policy = RetryPolicy(base_s=10, factor=2, cap_s=100, jitter=0.5)
    assert policy.delay_s(1, 0.0) == 10
    assert policy.delay_s(1, 0.999999) == pytest.approx(5, rel=1e-4)
    assert policy.delay_s(50, 0.0) == 100  # capped, never above


@given(attempts=st.integers(min_value=1, max_value=10_000), rand=st.floats(min_value=0, max_value=1))
def test_delay_is_always_within_bounds(attempts: int, rand: float) -> None:
    policy = RetryPolicy()
    delay = policy.delay_s(attempts, rand)
    assert policy.base_s * (1 - policy.jitter) <= delay <= policy.cap_s


def test_transient_failures_retry_until_the_limit_then_dead() -> None:
    policy = RetryPolicy(base_s=1, cap_s=8, max_attempts=3, jitter=0)
    first = policy.decide(attempts=1, failure=Failure.TRANSIENT, now=NOW, rand=0.3, error="HTTP 503")
    assert first == RetryAt(at=NOW + timedelta(seconds=1), delay_s=1)
    second = policy.decide(attempts=2, failure=Failure.TRANSIENT, now=NOW, rand=0.3)
    assert second == RetryAt(at=NOW + timedelta(seconds=2), delay_s=2)
    third = policy.decide(attempts=3, failure=Failure.TRANSIENT, now=NOW, rand=0.3, error="HTTP 503")
    assert third == DeadLetter(reason="gave up after 3 attempts: HTTP 503")


def test_permanent_failures_are_dead_at_once() -> None:
    decision = RetryPolicy().decide(attempts=1, failure=Failure.PERMANENT, now=NOW, rand=0.5, error="HTTP 400")
    assert decision == DeadLetter(reason="permanent failure: HTTP 400")


def test_retry_after_is_a_floor_but_never_above_the_cap() -> None:
    policy = RetryPolicy(base_s=1, cap_s=60, jitter=0)
    assert policy.decide(attempts=1, failure=Failure.TRANSIENT, now=NOW, rand=0, not_before_s=20) == RetryAt(
        at=NOW + timedelta(seconds=20), delay_s=20)
    long = policy.decide(attempts=1, failure=Failure.TRANSIENT, now=NOW, rand=0, not_before_s=86400)
    assert isinstance(long, RetryAt) and long.delay_s == 60


def test_the_default_policy_outlasts_a_crm_down_for_an_hour() -> None:
    """Even with the unluckiest jitter the last try comes two hours on, not one."""
    assert RetryPolicy().patience_s() > 2 * 3600


@pytest.mark.parametrize("bad", [dict(base_s=0), dict(factor=0.5), dict(cap_s=0.5), dict(max_attempts=0),
                                 dict(jitter=1.0)])
def test_nonsense_policies_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "echoed", "retry_after", "failure", "retry_after_s"),
    [
        (200, None, None, None, None),
        (201, None, None, None, None),
        (204, None, None, None, None),
        (409, None, None, None, None),  # the CRM already has this key: delivered before
        (409, "key-1", None, None, None),
        (409, "someone-else", None, Failure.PERMANENT, None),
        (400, None, None, Failure.PERMANENT, None),
        (401, None, None, Failure.PERMANENT, None),
        (404, None, None, Failure.PERMANENT, None),
        (422, None, None, Failure.PERMANENT, None),
        (301, None, None, Failure.PERMANENT, None),
        (408, None, None, Failure.TRANSIENT, None),
        (429, None, "7", Failure.TRANSIENT, 7.0),
        (429, None, "Wed, 21 Oct 2015 07:28:00 GMT", Failure.TRANSIENT, None),
        (500, None, None, Failure.TRANSIENT, None),
        (502, None, None, Failure.TRANSIENT, None),
        (503, None, "30", Failure.TRANSIENT, 30.0),
    ],
)
def test_classify_crm_answers(status: int, echoed: str | None, retry_after: str | None,
                              failure: Failure | None, retry_after_s: float | None) -> None:
    result = classify(status, idempotency_key="key-1", echoed_key=echoed, retry_after=retry_after, body="oops")
    assert result.failure is failure
    assert result.delivered is (failure is None)
    assert result.retry_after_s == retry_after_s
    if failure is not None:
        assert result.error == f"HTTP {status}: oops"
