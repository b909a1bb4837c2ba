"""The outbox retry policy: when to try a failed delivery again, and when to give up.

Owns exponential backoff with jitter, its cap, the attempt limit after which a message
is dead-lettered, and the split of failures into transient and permanent. Pure: no
clock, no randomness of its own (`now` and the jitter draw come in as arguments), no
I/O. Must never decide anything about how a message is sent; the connector reports
what happened and this module only answers "again at T" or "dead".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta


class Failure(enum.Enum):
    TRANSIENT = "transient"  # 5xx, timeouts, refused connections, 429: the CRM may heal
    PERMANENT = "permanent"  # other 4xx, an unmappable payload: trying again cannot help


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryAt:
    at: datetime
    delay_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    reason: str


Decision = RetryAt | DeadLetter


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Delay before attempt n+1 = min(cap, base * factor**(n-1)), shrunk by up to `jitter`.

    The defaults keep trying for over two hours (2 s doubling to a 10 min cap, 25
    attempts), so a CRM that is down for an hour loses nothing; `test_crm_sync_retry`
    holds them to that. Jitter only ever shortens a delay, so the cap stays a cap and
    a fleet of hubs does not hammer a recovering CRM in lockstep.
    """

    base_s: float = 2.0
    factor: float = 2.0
    cap_s: float = 600.0
    max_attempts: int = 25
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.factor < 1 or self.cap_s < self.base_s:
            raise ValueError("need base_s > 0, factor >= 1 and cap_s >= base_s")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def delay_s(self, attempts: int, rand: float) -> float:
        """The pause after the `attempts`-th failed try; `rand` is a uniform draw in [0, 1)."""
        exponent = max(attempts - 1, 0)
        # Compare in log space first: factor**exponent overflows floats for long outages.
        raw = self.cap_s
        if exponent < 1024 and self.base_s * self.factor**exponent < self.cap_s:
            raw = self.base_s * self.factor**exponent
        return raw * (1.0 - self.jitter * min(max(rand, 0.0), 1.0))

    def decide(
        self, *, attempts: int, failure: Failure, now: datetime, rand: float,
        error: str = "", not_before_s: float | None = None,
    ) -> Decision:
        """What to do after the `attempts`-th try (counted from 1) failed with `failure`.

        `not_before_s` is the peer's own Retry-After, honoured as a floor (never above
        the cap: a CRM asking for a day's pause must not stall the outbox for a day).
        """
        if failure is Failure.PERMANENT:
            return DeadLetter(reason=f"permanent failure: {error}" if error else "permanent failure")
        if attempts >= self.max_attempts:
            return DeadLetter(reason=f"gave up after {attempts} attempts: {error}" if error else
                              f"gave up after {attempts} attempts")
        delay = self.delay_s(attempts, rand)
        if not_before_s is not None:
            delay = max(delay, min(not_before_s, self.cap_s))
        return RetryAt(at=now + timedelta(seconds=delay), delay_s=delay)

    def patience_s(self) -> float:
        """The shortest total wait before a message that always fails transiently is dead."""
        return sum(self.delay_s(n, 1.0) for n in range(1, self.max_attempts))


__all__ = ["DeadLetter", "Decision", "Failure", "RetryAt", "RetryPolicy"]
