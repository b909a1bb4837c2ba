"""Recording policy, retention, legal hold and PCI pause bookkeeping (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recordings.policy import (
    PausedInterval,
    PauseLog,
    PolicyError,
    PurgeVerdict,
    RecordingMode,
    RecordingPolicy,
    add_years,
    check_extension,
    purge_verdict,
    retention_until,
)

T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("mode", "at_bridge", "agent_starts", "agent_stops"),
    [
        ("always", True, False, False),
        ("never", False, False, False),
        ("on_demand", False, True, True),
        ("On-Demand", False, True, True),
    ],
)
def test_what_each_mode_allows(mode: str, at_bridge: bool, agent_starts: bool, agent_stops: bool) -> None:
    policy = RecordingPolicy.parse(mode)
    assert (policy.starts_when_bridged, policy.agent_may_start, policy.agent_may_stop) == (
        at_bridge, agent_starts, agent_stops,
    )


def test_defaults_are_always_and_five_years() -> None:
    policy = RecordingPolicy()
    assert policy.mode is RecordingMode.ALWAYS and policy.retention_years == 5
    assert RecordingPolicy(retention_years=7).retention_years == 7


@pytest.mark.parametrize("years", [0, 8, -1])
def test_retention_outside_one_to_seven_years_is_refused(years: int) -> None:
    with pytest.raises(PolicyError):
        RecordingPolicy(retention_years=years)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(PolicyError, match="sometimes"):
        RecordingPolicy.parse("sometimes")


def test_retention_counts_from_the_end_of_the_call_and_never_rounds_down() -> None:
    assert retention_until(T, 5) == datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
    leap = datetime(2024, 2, 29, 9, 30, tzinfo=UTC)
    assert add_years(leap, 5) == datetime(2029, 3, 1, 9, 30, tzinfo=UTC)
    assert add_years(leap, 4) == datetime(2028, 2, 29, 9, 30, tzinfo=UTC)


def _verdict(now: datetime, *, hold: bool = False, until: datetime | None = None, deleted: bool = False) -> PurgeVerdict:
    return purge_verdict(
        now=now, ended_at=T, retention_years=5, retention_until=until or retention_until(T, 5),
        legal_hold=hold, deleted_at=T if deleted else None,
    )


def test_purge_verdicts() -> None:
    due = retention_until(T, 5)
    assert _verdict(due - timedelta(seconds=1)) is PurgeVerdict.KEEP_RETENTION
    assert _verdict(due) is PurgeVerdict.PURGE
    assert _verdict(due, hold=True) is PurgeVerdict.KEEP_LEGAL_HOLD
    assert _verdict(due, deleted=True) is PurgeVerdict.ALREADY_PURGED
    # An extended date keeps it longer...
    assert _verdict(due, until=add_years(T, 7)) is PurgeVerdict.KEEP_RETENTION
    # ...an edited earlier date cannot cut below the chained retention years.
    assert _verdict(T + timedelta(days=1), until=T) is PurgeVerdict.KEEP_RETENTION


def test_extensions_only_lengthen_and_stop_at_seven_years() -> None:
    current = retention_until(T, 5)
    assert check_extension(T, current, add_years(T, 7)) == add_years(T, 7)
    with pytest.raises(PolicyError, match="shortened"):
        check_extension(T, current, current - timedelta(days=1))
    with pytest.raises(PolicyError, match="legal hold"):
        check_extension(T, current, add_years(T, 7) + timedelta(seconds=1))


def test_pause_log_is_idempotent_and_keeps_closed_intervals() -> None:
    log = PauseLog()
    assert log.pause(100) and not log.pause(150) and log.paused
    assert log.resume(300) and not log.resume(310) and not log.paused
    assert log.pause(400)
    assert log.intervals() == (PausedInterval(start=100, end=300),)
    assert log.intervals(until=500) == (PausedInterval(start=100, end=300), PausedInterval(start=400, end=500))
    with pytest.raises(PolicyError, match="back in time"):
        log.resume(399)


def test_an_empty_pause_leaves_no_interval() -> None:
    log = PauseLog()
    log.pause(10)
    log.resume(10)
    assert log.intervals() == ()


def test_interval_in_milliseconds_rounds_outwards() -> None:
    interval = PausedInterval(start=8004, end=16004)
    assert interval.as_ms() == [1000, 2001]
    assert (interval.start_s, interval.end_s) == (8004 / 8000, 16004 / 8000)


@given(
    st.lists(st.integers(min_value=0, max_value=50), min_size=0, max_size=12),
    st.integers(min_value=0, max_value=300),
    st.integers(min_value=0, max_value=300),
)
def test_silence_mask_is_exactly_the_paused_samples_of_the_span(steps: list[int], start: int, length: int) -> None:
    log = PauseLog()
    at = 0
    paused: set[int] = set()
    for k, step in enumerate(steps):
        at += step
        if k % 2 == 0:
            log.pause(at)
            began = at
        else:
            log.resume(at)
            paused.update(range(began, at))
    end = start + length
    if log.paused:
        paused.update(range(began, max(end, began)))
    mask = log.silence_mask(start, end)
    silenced = {start + offset + i for offset, n in mask for i in range(n)}
    assert silenced == {s for s in paused if start <= s < end}
