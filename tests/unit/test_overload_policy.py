"""The overload policy, pure: readings and new calls in, admit/refuse and transitions out."""

from __future__ import annotations

import pytest

from cti.sip.overload import (
    BecameOverloaded,
    Load,
    OverloadLimits,
    OverloadPolicy,
    Recovered,
)

LIMITS = OverloadLimits(
    lag_enter_s=0.2, lag_leave_s=0.05, setup_enter=10, setup_leave=5, queue_enter=0.5, queue_leave=0.1,
    calm_s=2.0, retry_after_s=7, lag_weight=1.0,  # weight 1: the smoothed lag is the last sample
)


def calm(policy: OverloadPolicy, now: float) -> object:
    return policy.reading(now, lag_s=0.0, calls_in_setup=0, queue_fill=0.0)


def test_a_hub_at_ease_admits_every_new_call() -> None:
    policy = OverloadPolicy(LIMITS)
    for i in range(100):
        assert calm(policy, i * 0.1) is None
        assert policy.new_call(i * 0.1, calls_in_setup=9).admit
    assert policy.state is Load.NORMAL and policy.refused_total == 0


@pytest.mark.parametrize(
    ("lag", "setup", "fill", "words"),
    [(0.25, 0, 0.0, "event-loop lag 250 ms"), (0.0, 10, 0.0, "10 calls in set-up"), (0.0, 0, 0.6, "receive queue 60%")],
)
def test_each_signal_over_its_limit_means_overloaded(lag: float, setup: int, fill: float, words: str) -> None:
    policy = OverloadPolicy(LIMITS)
    became = policy.reading(1.0, lag_s=lag, calls_in_setup=setup, queue_fill=fill)
    assert isinstance(became, BecameOverloaded) and words in became.reason and became.at == 1.0
    refused = policy.new_call(1.1, calls_in_setup=0)
    assert not refused.admit and refused.retry_after_s == 7 and refused.transition is None


def test_a_burst_of_calls_in_set_up_tips_the_hub_over_between_readings() -> None:
    policy = OverloadPolicy(LIMITS)
    assert policy.new_call(0.0, calls_in_setup=9).admit
    tipping = policy.new_call(0.01, calls_in_setup=10)
    assert not tipping.admit and isinstance(tipping.transition, BecameOverloaded)
    assert "10 calls in set-up (limit 10)" in tipping.transition.reason
    assert policy.new_call(0.02, calls_in_setup=3).transition is None  # refused, no second transition


def test_hysteresis_readings_between_the_limits_keep_it_overloaded() -> None:
    policy = OverloadPolicy(LIMITS)
    policy.reading(0.0, lag_s=0.3, calls_in_setup=0)
    now = 0.0
    for _ in range(100):  # 10 s of lag between leave (50 ms) and enter (200 ms)
        now += 0.1
        assert policy.reading(now, lag_s=0.1, calls_in_setup=0) is None
        assert policy.reading(now, lag_s=0.0, calls_in_setup=7) is None  # set-up between 5 and 10
        assert policy.reading(now, lag_s=0.0, calls_in_setup=0, queue_fill=0.3) is None
    assert policy.overloaded


def test_it_recovers_only_after_every_signal_was_calm_for_calm_s() -> None:
    policy = OverloadPolicy(LIMITS)
    policy.reading(10.0, lag_s=0.5, calls_in_setup=0)
    for i in range(3):
        assert not policy.new_call(10.0 + i * 0.1, calls_in_setup=0).admit
    assert calm(policy, 11.0) is None  # calm from 11.0
    assert calm(policy, 12.9) is None  # 1.9 s calm: not yet
    policy.reading(12.95, lag_s=0.06, calls_in_setup=0)  # just over the leave limit: the calm restarts
    assert calm(policy, 13.0) is None
    assert calm(policy, 14.9) is None
    recovered = calm(policy, 15.0)
    assert recovered == Recovered(at=15.0, lasted_s=5.0, refused=3)
    assert policy.new_call(15.1, calls_in_setup=0).admit
    assert policy.refused_total == 3


def test_it_does_not_flap_on_a_signal_hovering_at_the_limit() -> None:
    policy = OverloadPolicy(LIMITS)
    transitions = []
    now = 0.0
    for i in range(200):  # lag alternating 210 ms / 190 ms around the 200 ms limit, for 20 s
        now += 0.1
        transition = policy.reading(now, lag_s=0.21 if i % 2 else 0.19, calls_in_setup=0)
        if transition is not None:
            transitions.append(transition)
    assert len(transitions) == 1 and isinstance(transitions[0], BecameOverloaded)


def test_a_single_late_tick_is_smoothed_away() -> None:
    policy = OverloadPolicy(OverloadLimits(lag_enter_s=0.25, lag_leave_s=0.06, lag_weight=0.5))
    assert policy.reading(0.1, lag_s=0.4, calls_in_setup=0) is None  # one 400 ms stall: 200 ms smoothed
    assert policy.reading(0.2, lag_s=0.0, calls_in_setup=0) is None  # 100 ms
    assert policy.reading(0.3, lag_s=0.0, calls_in_setup=0) is None  # 50 ms
    assert not policy.overloaded
    assert policy.reading(0.4, lag_s=0.4, calls_in_setup=0) is None  # 225 ms
    assert isinstance(policy.reading(0.5, lag_s=0.4, calls_in_setup=0), BecameOverloaded)  # sustained: 312 ms


def test_a_signal_set_to_zero_is_off() -> None:
    policy = OverloadPolicy(OverloadLimits(lag_enter_s=0, lag_leave_s=0, setup_enter=0, setup_leave=0, queue_enter=0, queue_leave=0))
    assert policy.reading(0.0, lag_s=5.0, calls_in_setup=10_000, queue_fill=1.0) is None
    assert policy.new_call(0.0, calls_in_setup=10_000).admit


def test_limits_from_the_settings_and_their_checks() -> None:
    limits = OverloadLimits.from_settings(lag_ms=400, max_setup=50, retry_after_s=3)
    assert (limits.lag_enter_s, limits.lag_leave_s, limits.setup_enter, limits.setup_leave) == (0.4, 0.1, 50, 25)
    assert limits.retry_after_s == 3 and limits.queue_enter == 0.5
    off = OverloadLimits.from_settings(lag_ms=0, max_setup=0, retry_after_s=5)
    assert (off.lag_enter_s, off.setup_enter, off.queue_enter) == (0, 0, 0)
    with pytest.raises(ValueError, match="leave threshold"):
        OverloadLimits(setup_enter=10, setup_leave=20)
    with pytest.raises(ValueError, match="negative"):
        OverloadLimits(lag_enter_s=-1, lag_leave_s=-2)
