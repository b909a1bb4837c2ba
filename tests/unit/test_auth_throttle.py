"""The login throttle's policy, with the time passed in: free typos, a doubling wait,
then a lockout; refused attempts not counted; a success takes back only its pair."""

from __future__ import annotations

import pytest

from cti.web.login_throttle import (
    SOURCE_LIMITS,
    USERNAME_LIMITS,
    Failures,
    Go,
    Limits,
    LoginThrottle,
    Verdict,
    Wait,
    source_key,
)

T0 = 1_700_000_000.0


class Desk:
    """The throttle and its two kinds of records, as a store would keep them."""

    def __init__(self, throttle: LoginThrottle | None = None) -> None:
        self.throttle = throttle or LoginThrottle()
        self.records: dict[str, Failures | None] = {}

    def attempt(self, username: str, source: str, now: float) -> Verdict:
        verdict, by_username, by_source = self.throttle.attempt(
            username=username,
            source=source,
            by_username=self.records.get("u:" + username),
            by_source=self.records.get("s:" + source),
            now=now,
        )
        self.records["u:" + username], self.records["s:" + source] = by_username, by_source
        return verdict

    def success(self, username: str, source: str, now: float) -> None:
        self.records["u:" + username], self.records["s:" + source] = self.throttle.succeeded(
            username=username,
            source=source,
            by_username=self.records.get("u:" + username),
            by_source=self.records.get("s:" + source),
            now=now,
        )

    def total(self, key: str) -> int:
        record = self.records.get(key)
        return record.total if record else 0


def test_the_default_limits_are_the_documented_ones() -> None:
    assert (USERNAME_LIMITS.free, USERNAME_LIMITS.lock_after, USERNAME_LIMITS.lockout_s) == (3, 10, 900.0)
    assert (SOURCE_LIMITS.free, SOURCE_LIMITS.lock_after, SOURCE_LIMITS.lockout_s) == (20, 100, 900.0)


def test_typos_are_free_then_the_wait_doubles_then_the_username_locks() -> None:
    desk = Desk()
    now = T0
    for _ in range(3):
        assert desk.attempt("anna", "10.0.0.1", now) == Go()
    # The 4th failure is let through and asks for 1 s; each one after doubles it.
    expected_waits = [1, 2, 4, 8, 16, 32]
    for wait in expected_waits:
        assert desk.attempt("anna", "10.0.0.1", now) == Go()
        early = desk.attempt("anna", "10.0.0.1", now + wait - 0.01)
        assert isinstance(early, Wait) and not early.locked and early.scope == "username"
        assert early.retry_after_s == pytest.approx(0.01)
        now += wait
    # The 10th failure locks the username for 15 minutes.
    assert desk.attempt("anna", "10.0.0.1", now) == Go(locks=("username",))
    locked = desk.attempt("anna", "10.0.0.1", now + 1)
    assert locked == Wait(retry_after_s=899.0, locked=True, scope="username")
    assert desk.attempt("anna", "10.0.0.9", now + 600) == Wait(retry_after_s=300.0, locked=True, scope="username")
    # Locked from any address, and only that username.
    assert desk.attempt("ben", "10.0.0.1", now + 1) == Go()
    # Once the lock is over the record is forgotten: a fresh start.
    assert desk.attempt("anna", "10.0.0.1", now + 900) == Go()
    assert desk.total("u:anna") == 1


def test_a_refused_attempt_is_not_counted() -> None:
    desk = Desk()
    for _ in range(4):
        desk.attempt("anna", "10.0.0.1", T0)
    before = desk.records.copy()
    for dt in (0.1, 0.2, 0.5, 0.9):
        assert isinstance(desk.attempt("anna", "10.0.0.1", T0 + dt), Wait)
    assert desk.records == before
    # Honouring Retry-After is enough: the wait did not grow with the refusals.
    assert desk.attempt("anna", "10.0.0.1", T0 + 1.0) == Go()


def test_concurrent_attempts_see_each_other() -> None:
    """Counted before the password is checked: the 5th concurrent attempt waits even
    though none of the first four has failed yet."""
    desk = Desk()
    verdicts = [desk.attempt("anna", "10.0.0.1", T0) for _ in range(5)]
    assert verdicts[:4] == [Go()] * 4
    assert isinstance(verdicts[4], Wait)


def test_a_success_takes_back_only_its_own_pair() -> None:
    desk = Desk()
    for _ in range(2):
        desk.attempt("anna", "10.0.0.1", T0)
        desk.attempt("anna", "10.0.0.2", T0)
        desk.attempt("mallory-target", "10.0.0.1", T0)
    desk.attempt("anna", "10.0.0.1", T0 + 1)  # the one that succeeds
    desk.success("anna", "10.0.0.1", T0 + 1)
    assert desk.total("u:anna") == 2  # the failures from 10.0.0.2 stay
    assert desk.total("s:10.0.0.1") == 2  # the failures at mallory-target stay
    assert desk.total("s:10.0.0.2") == 2


def test_a_success_clears_a_users_own_typos() -> None:
    desk = Desk()
    for _ in range(5):
        desk.attempt("anna", "10.0.0.1", T0)
    desk.success("anna", "10.0.0.1", T0)
    assert desk.records["u:anna"] is None and desk.records["s:10.0.0.1"] is None
    assert desk.attempt("anna", "10.0.0.1", T0) == Go()


def test_one_source_spraying_many_usernames_is_slowed_then_locked() -> None:
    desk = Desk()
    for n in range(20):
        assert desk.attempt(f"user{n}", "203.0.113.7", T0) == Go()
    assert desk.attempt("user20", "203.0.113.7", T0) == Go()
    wait = desk.attempt("user21", "203.0.113.7", T0)
    assert wait == Wait(retry_after_s=1.0, locked=False, scope="source")
    # Another address is not affected.
    assert desk.attempt("user21", "203.0.113.8", T0) == Go()


def test_the_source_locks_after_its_own_limit() -> None:
    limits = Limits(free=1, lock_after=3, base_delay_s=1, max_delay_s=1, lockout_s=60, window_s=60)
    desk = Desk(LoginThrottle(per_source=limits))
    assert desk.attempt("a", "s", T0) == Go()
    assert desk.attempt("b", "s", T0) == Go()
    assert desk.attempt("c", "s", T0 + 1) == Go(locks=("source",))
    assert desk.attempt("d", "s", T0 + 2) == Wait(retry_after_s=59.0, locked=True, scope="source")


def test_the_longer_wait_of_the_two_records_wins() -> None:
    user = Limits(free=0, lock_after=5, base_delay_s=10, max_delay_s=10, lockout_s=60, window_s=60)
    source = Limits(free=0, lock_after=5, base_delay_s=2, max_delay_s=2, lockout_s=60, window_s=60)
    desk = Desk(LoginThrottle(per_username=user, per_source=source))
    desk.attempt("anna", "s", T0)
    assert desk.attempt("anna", "s", T0 + 1) == Wait(retry_after_s=9.0, locked=False, scope="username")
    assert desk.attempt("ben", "s", T0 + 1) == Wait(retry_after_s=1.0, locked=False, scope="source")


def test_the_wait_is_capped() -> None:
    limits = Limits(free=0, lock_after=50, base_delay_s=1, max_delay_s=5, lockout_s=60, window_s=60)
    assert limits.wait_s(40, T0, T0) == (5.0, False)
    assert limits.wait_s(3, T0, T0) == (4.0, False)
    assert limits.wait_s(50, T0, T0 + 10) == (50.0, True)


def test_records_are_forgotten_a_window_after_their_last_failure() -> None:
    limits = Limits(free=1, lock_after=10, base_delay_s=1, max_delay_s=1, lockout_s=30, window_s=120)
    desk = Desk(LoginThrottle(per_username=limits))
    desk.attempt("anna", "s", T0)
    desk.attempt("anna", "s", T0 + 100)
    assert desk.attempt("anna", "s", T0 + 101) == Go()  # still counting: 3
    assert desk.total("u:anna") == 3
    assert desk.attempt("anna", "s", T0 + 101 + 120) == Go()
    assert desk.total("u:anna") == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"free": 3, "lock_after": 3},
        {"free": -1},
        {"base_delay_s": 0},
        {"max_delay_s": 0.5},
        {"lockout_s": 0},
        {"window_s": 10},
    ],
)
def test_limits_refuse_nonsense(kwargs: dict[str, float]) -> None:
    fields: dict[str, float] = {"free": 1, "lock_after": 5, "base_delay_s": 1, "max_delay_s": 4, "lockout_s": 60, "window_s": 60}
    fields.update(kwargs)
    with pytest.raises(ValueError):
        Limits(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.10", "192.0.2.10"),
        ("fe80::1%eth0", "fe80::/64"),
        (None, "unknown"),
        ("", "unknown"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_source_key(address: str | None, key: str) -> None:
    assert source_key(address) == key
