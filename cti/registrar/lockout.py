"""Lock out sources that keep failing digest authentication.

Owns the failure counters (per source IP, and per username) over a sliding window
and the lock each one earns. Must never read a clock, do I/O or compute a digest:
the registrar asks `is_locked` before it spends any hashing on a request.

Choices, and why:
- A locked source gets 403 with Retry-After (not a silent drop): a phone with a
  mistyped password then shows "forbidden" instead of retrying forever, and the
  response costs no hashing.
- A success clears only that source's failures *for that username*, so an attacker
  holding one valid account cannot reset the counter between guesses at others.
- Locking by username is off by default (`max_user_failures=None`): anyone who can
  send packets could otherwise lock an agent's phones out from a few addresses. The
  per-username counts are kept either way, for monitoring.
- State is per process. With several hub processes, each counts on its own, so an
  attacker spread over N processes gets N × max_failures guesses per window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["LockoutPolicy"]


@dataclass(slots=True)
class _Counter:
    failures: deque[tuple[float, str]] = field(default_factory=deque)  # (when, the other key)
    locked_until: float = 0.0


class LockoutPolicy:
    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 60,
        lockout_s: float = 300,
        *,
        max_user_failures: int | None = None,
        max_tracked: int = 100_000,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or lockout_s <= 0:
            raise ValueError("max_failures, window_s and lockout_s must be positive")
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_user_failures = max_user_failures
        self.max_tracked = max_tracked  # bounds memory under a spray from many addresses
        self._sources: dict[str, _Counter] = {}
        self._users: dict[str, _Counter] = {}

    def _trim(self, counter: _Counter, now: float) -> None:
        while counter.failures and counter.failures[0][0] <= now - self.window_s:
            counter.failures.popleft()

    def _prune(self, table: dict[str, _Counter], now: float) -> None:
        if len(table) < self.max_tracked:
            return
        for key in list(table):
            counter = table[key]
            self._trim(counter, now)
            if not counter.failures and counter.locked_until <= now:
                del table[key]
        while len(table) >= self.max_tracked:
            # Still full of live entries: forget the oldest rather than grow without bound.
            del table[next(iter(table))]

    def _bump(
        self, table: dict[str, _Counter], key: str, other: str, now: float, limit: int | None
    ) -> bool:
        counter = table.get(key)
        if counter is None:
            self._prune(table, now)
            counter = table[key] = _Counter()
        self._trim(counter, now)
        counter.failures.append((now, other))
        if limit is not None and len(counter.failures) >= limit and counter.locked_until <= now:
            counter.locked_until = now + self.lockout_s
            counter.failures.clear()
            return True
        return False

    def record_failure(self, source_ip: str, username: str, now: float) -> bool:
        """Count one failed authentication; True when it locks the source (or user)."""
        locked = self._bump(self._sources, source_ip, username, now, self.max_failures)
        user_locked = self._bump(self._users, username, source_ip, now, self.max_user_failures)
        return locked or user_locked

    def record_success(self, source_ip: str, username: str, now: float) -> None:
        # Only the misses of this (source, username) pair were typos; others stay counted.
        self._forget(self._sources, source_ip, username, now)
        self._forget(self._users, username, source_ip, now)

    @staticmethod
    def _forget(table: dict[str, _Counter], key: str, other: str, now: float) -> None:
        counter = table.get(key)
        if counter is None:
            return
        counter.failures = deque(f for f in counter.failures if f[1] != other)
        if not counter.failures and counter.locked_until <= now:
            del table[key]

    def retry_after(self, source_ip: str, now: float) -> float:
        """Seconds until the source may try again; 0 when it is not locked."""
        counter = self._sources.get(source_ip)
        return max(0.0, counter.locked_until - now) if counter is not None else 0.0

    def is_locked(self, source_ip: str, now: float) -> bool:
        return self.retry_after(source_ip, now) > 0

    def user_retry_after(self, username: str, now: float) -> float:
        counter = self._users.get(username)
        return max(0.0, counter.locked_until - now) if counter is not None else 0.0

    def is_user_locked(self, username: str, now: float) -> bool:
        return self.user_retry_after(username, now) > 0

    def failures(self, source_ip: str, now: float) -> int:
        """Failures of the source inside the current window (for tests and metrics)."""
        counter = self._sources.get(source_ip)
        if counter is None:
            return 0
        self._trim(counter, now)
        return len(counter.failures)

    def user_failures(self, username: str, now: float) -> int:
        counter = self._users.get(username)
        if counter is None:
            return 0
        self._trim(counter, now)
        return len(counter.failures)
