"""Slow down, then lock out, password guessing at POST /api/login.

Owns the failure records of a username and of a source address, and the verdict on a
new attempt: go ahead, or wait so many seconds (the shell answers 429 with
Retry-After). Must never read a clock, sleep or do I/O: the caller passes `now` and
keeps the records in a store (`cti.web.throttle_store`: in the process, or in Redis
so that every hub process counts the same failures).

Choices, and why (the pattern of the SIP registrar's `LockoutPolicy`, with a delay
that grows before the lock and records a shared store can hold):
- Every attempt counts as a failure *before* its password is checked, and a success
  takes its count back. Parallel guesses therefore see each other: a burst of 100
  concurrent attempts is slowed like 100 sequential ones instead of all passing
  while argon2 is still busy with the first.
- Nothing sleeps on the server: a refused attempt is answered at once, is not
  counted and costs no hashing, so a client that honours Retry-After gets through.
- The first `free` failures cost nothing (typos); each one after doubles the wait,
  up to `max_delay_s`; at `lock_after` failures the key is locked for `lockout_s`.
- Counted per username (guessing at one account from many addresses) and per
  source address (one address spraying many accounts). The source limits are looser
  because a whole contact center often sits behind one NAT address.
- A success takes back only the failures of that (source, username) pair, in both
  records: an attacker holding one valid account cannot wipe a source's count
  between guesses at other accounts, and a user's own typos vanish when they get in.
- A record is forgotten `window_s` after its last failure (`window_s >= lockout_s`,
  so a lock never outlives its record). With a longer window, the first failure after
  a lock ends locks again at once.
- IPv6 sources count per /64: a host usually holds a whole /64 and could rotate.
- Trade-off: anyone may lock a username for `lockout_s` by failing `lock_after`
  times. The lock is short, logged, and does not touch sessions already open.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "SOURCE_LIMITS",
    "USERNAME_LIMITS",
    "Failures",
    "Go",
    "Limits",
    "LoginThrottle",
    "Verdict",
    "Wait",
    "source_key",
]

Scope = Literal["username", "source"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    free: int  # failures answered without any wait
    lock_after: int  # failures that lock the key
    base_delay_s: float  # the wait after the first failure past `free`; doubles after
    max_delay_s: float
    lockout_s: float
    window_s: float  # a record is forgotten this long after its last failure

    def __post_init__(self) -> None:
        if not 0 <= self.free < self.lock_after:
            raise ValueError("need 0 <= free < lock_after")
        if self.base_delay_s <= 0 or self.max_delay_s < self.base_delay_s or self.lockout_s <= 0:
            raise ValueError("delays and lockout must be positive, max_delay_s >= base_delay_s")
        if self.window_s < self.lockout_s:
            raise ValueError("window_s must be at least lockout_s")

    def wait_s(self, failures: int, last_at: float, now: float) -> tuple[float, bool]:
        """Seconds until the next attempt is allowed, and whether that is a lock."""
        if failures >= self.lock_after:
            return max(0.0, last_at + self.lockout_s - now), True
        if failures > self.free:
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** min(failures - self.free - 1, 30))
            return max(0.0, last_at + delay - now), False
        return 0.0, False


# 4th failure: wait 1 s, then 2, 4, 8, 16, 32; the 10th locks for 15 minutes.
USERNAME_LIMITS = Limits(free=3, lock_after=10, base_delay_s=1.0, max_delay_s=60.0, lockout_s=900.0, window_s=900.0)
SOURCE_LIMITS = Limits(free=20, lock_after=100, base_delay_s=1.0, max_delay_s=60.0, lockout_s=900.0, window_s=900.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Failures:
    """The counted attempts of one key inside its window.

    `counts` maps the other half of each attempt's pair (the source for a username's
    record, the username for a source's) to how many; it is what lets a success take
    back only its own pair."""

    counts: Mapping[str, int]
    last_at: float
    expires_at: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def live(self, now: float) -> Failures | None:
        return self if now < self.expires_at and self.counts else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Go:
    """Check the password. A failure will lock `locks` (empty: nothing)."""

    locks: tuple[Scope, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    retry_after_s: float
    locked: bool  # locked out (True) or only slowed down
    scope: Scope  # which record asked for the wait


Verdict = Go | Wait


class LoginThrottle:
    def __init__(self, *, per_username: Limits = USERNAME_LIMITS, per_source: Limits = SOURCE_LIMITS) -> None:
        self.per_username = per_username
        self.per_source = per_source

    def attempt(
        self,
        *,
        username: str,
        source: str,
        by_username: Failures | None,
        by_source: Failures | None,
        now: float,
    ) -> tuple[Verdict, Failures | None, Failures | None]:
        """The verdict on a new attempt and the two records after it.

        A refused attempt leaves the records as they were; an allowed one is counted."""
        by_username = by_username.live(now) if by_username else None
        by_source = by_source.live(now) if by_source else None
        waits: list[tuple[float, bool, Scope]] = []
        checks: tuple[tuple[Failures | None, Limits, Scope], ...] = (
            (by_username, self.per_username, "username"),
            (by_source, self.per_source, "source"),
        )
        for record, limits, scope in checks:
            if record is not None:
                seconds, locked = limits.wait_s(record.total, record.last_at, now)
                if seconds > 0:
                    waits.append((seconds, locked, scope))
        if waits:
            seconds, locked, scope = max(waits)
            return Wait(retry_after_s=seconds, locked=locked, scope=scope), by_username, by_source
        new_username = _counted(by_username, source, now, self.per_username)
        new_source = _counted(by_source, username, now, self.per_source)
        locks: list[Scope] = []
        if new_username.total >= self.per_username.lock_after:
            locks.append("username")
        if new_source.total >= self.per_source.lock_after:
            locks.append("source")
        return Go(locks=tuple(locks)), new_username, new_source

    def succeeded(
        self,
        *,
        username: str,
        source: str,
        by_username: Failures | None,
        by_source: Failures | None,
        now: float,
    ) -> tuple[Failures | None, Failures | None]:
        """The records once the pair's attempts (the successful one included) are taken back."""
        return _without(by_username, source, now), _without(by_source, username, now)

    def lockout_s(self, scope: Scope) -> float:
        return (self.per_username if scope == "username" else self.per_source).lockout_s


def _counted(record: Failures | None, other: str, now: float, limits: Limits) -> Failures:
    counts = dict(record.counts) if record is not None else {}
    counts[other] = counts.get(other, 0) + 1
    return Failures(counts=MappingProxyType(counts), last_at=now, expires_at=now + limits.window_s)


def _without(record: Failures | None, other: str, now: float) -> Failures | None:
    record = record.live(now) if record is not None else None
    if record is None or other not in record.counts:
        return record
    counts = {k: v for k, v in record.counts.items() if k != other}
    if not counts:
        return None
    return Failures(counts=MappingProxyType(counts), last_at=record.last_at, expires_at=record.expires_at)


def source_key(address: str | None) -> str:
    """The key a peer address counts under: the address, or its /64 for IPv6."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip), 64), strict=False))
    return str(ip)
