"""Overload control for new calls (pure).

Past its capacity a hub that takes every new INVITE serves all calls badly: its SIP
socket overflows, callers and phones retransmit, and calls in progress lose their BYEs.
So while the hub is overloaded a new call (an INVITE without a To tag) is refused at
once with 503 and a Retry-After (RFC 3261 §21.5.4), which costs far less than a call,
while requests within dialogs are always served.

Owns: what "overloaded" means, from readings the adapter takes cheaply and often
(event-loop lag, calls in set-up, how full the SIP socket's receive queue is), with
hysteresis so that the state does not flap; and the answer for each new call.
Must never: read a clock, touch a socket or import asyncio. Time and readings come in
as arguments; what happened goes out as past-tense facts for the adapter to log.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

QUEUE_ENTER = 0.5  # half the receive buffer in use: the hub reads its socket too late
QUEUE_LEAVE = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class OverloadLimits:
    """Where overload starts and where it ends; 0 turns a signal off. Each signal leaves
    overload well below where it entered it (hysteresis), and the hub stays overloaded
    until every signal has been calm for `calm_s`."""

    lag_enter_s: float = 0.25  # smoothed event-loop lag
    lag_leave_s: float = 0.06
    setup_enter: int = 200  # calls between their INVITE and its final response
    setup_leave: int = 100
    queue_enter: float = QUEUE_ENTER  # share of the SIP UDP socket's receive buffer in use
    queue_leave: float = QUEUE_LEAVE
    calm_s: float = 2.0
    retry_after_s: int = 5
    lag_weight: float = 0.3  # weight of a new lag sample in the smoothed lag: one stall alone does not count

    def __post_init__(self) -> None:
        if self.lag_enter_s < 0 or self.setup_enter < 0 or self.queue_enter < 0:
            raise ValueError("overload thresholds must not be negative")
        if self.lag_leave_s > self.lag_enter_s or self.setup_leave > self.setup_enter or self.queue_leave > self.queue_enter:
            raise ValueError("an overload leave threshold must not exceed its enter threshold")
        if self.calm_s < 0 or self.retry_after_s < 0 or not 0 < self.lag_weight <= 1:
            raise ValueError("calm_s and retry_after_s must not be negative; 0 < lag_weight <= 1")

    @classmethod
    def from_settings(cls, *, lag_ms: float, max_setup: int, retry_after_s: int) -> OverloadLimits:
        """Limits from the operator's two thresholds; each leave threshold follows its
        enter threshold (a quarter of the lag, half the calls in set-up). Both at 0 turn
        overload control off, the receive queue's signal included."""
        lag = lag_ms / 1000
        on = bool(lag_ms or max_setup)
        return cls(
            lag_enter_s=lag, lag_leave_s=lag / 4, setup_enter=max_setup, setup_leave=max_setup // 2,
            queue_enter=QUEUE_ENTER if on else 0.0, queue_leave=QUEUE_LEAVE if on else 0.0,
            retry_after_s=retry_after_s,
        )


class Load(enum.Enum):
    NORMAL = "normal"
    OVERLOADED = "overloaded"


@dataclass(frozen=True, slots=True, kw_only=True)
class BecameOverloaded:
    at: float
    reason: str  # which reading crossed its limit, with its value


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovered:
    at: float
    lasted_s: float
    refused: int  # new calls refused while overloaded


Transition = BecameOverloaded | Recovered


@dataclass(frozen=True, slots=True, kw_only=True)
class NewCallDecision:
    admit: bool
    retry_after_s: int = 0
    transition: BecameOverloaded | None = None  # this very call tipped the hub over


class OverloadPolicy:
    """The overload state machine: NORMAL <-> OVERLOADED, one transition each way."""

    def __init__(self, limits: OverloadLimits | None = None) -> None:
        self.limits = limits or OverloadLimits()
        self.state = Load.NORMAL
        self.smoothed_lag_s = 0.0
        self.queue_fill = 0.0
        self.refused_total = 0
        self._since = 0.0  # when the current state began
        self._refused_now = 0  # refused in the current overload
        self._calm_since: float | None = None

    @property
    def overloaded(self) -> bool:
        return self.state is Load.OVERLOADED

    def reading(
        self, now: float, *, lag_s: float, calls_in_setup: int, queue_fill: float | None = None
    ) -> Transition | None:
        """A periodic reading: how late the adapter's timer fired, the calls in set-up,
        and the receive queue's fill (None where the platform cannot tell)."""
        limits = self.limits
        self.smoothed_lag_s += limits.lag_weight * (max(0.0, lag_s) - self.smoothed_lag_s)
        self.queue_fill = queue_fill if queue_fill is not None else 0.0
        over = self._over_limit(calls_in_setup)
        if self.state is Load.NORMAL:
            return self._enter(now, over) if over else None
        if over or not self._calm(calls_in_setup):
            self._calm_since = None
            return None
        if self._calm_since is None:
            self._calm_since = now
        if now - self._calm_since < limits.calm_s:
            return None
        recovered = Recovered(at=now, lasted_s=now - self._since, refused=self._refused_now)
        self.state, self._since, self._refused_now, self._calm_since = Load.NORMAL, now, 0, None
        return recovered

    def new_call(self, now: float, *, calls_in_setup: int) -> NewCallDecision:
        """Admit or refuse one new call. The calls in set-up are checked here too, not
        only at readings, so that a burst between two readings cannot overshoot."""
        transition = None
        if self.state is Load.NORMAL:
            limit = self.limits.setup_enter
            if not (limit and calls_in_setup >= limit):
                return NewCallDecision(admit=True)
            transition = self._enter(now, f"{calls_in_setup} calls in set-up (limit {limit})")
        self.refused_total += 1
        self._refused_now += 1
        return NewCallDecision(admit=False, retry_after_s=self.limits.retry_after_s, transition=transition)

    def _over_limit(self, calls_in_setup: int) -> str | None:
        limits = self.limits
        if limits.lag_enter_s and self.smoothed_lag_s >= limits.lag_enter_s:
            return f"event-loop lag {self.smoothed_lag_s * 1000:.0f} ms (limit {limits.lag_enter_s * 1000:.0f} ms)"
        if limits.setup_enter and calls_in_setup >= limits.setup_enter:
            return f"{calls_in_setup} calls in set-up (limit {limits.setup_enter})"
        if limits.queue_enter and self.queue_fill >= limits.queue_enter:
            return f"SIP receive queue {self.queue_fill:.0%} full (limit {limits.queue_enter:.0%})"
        return None

    def _calm(self, calls_in_setup: int) -> bool:
        limits = self.limits
        return (
            (not limits.lag_enter_s or self.smoothed_lag_s < limits.lag_leave_s)
            and (not limits.setup_enter or calls_in_setup <= limits.setup_leave)
            and (not limits.queue_enter or self.queue_fill < limits.queue_leave)
        )

    def _enter(self, now: float, reason: str) -> BecameOverloaded:
        self.state, self._since, self._refused_now, self._calm_since = Load.OVERLOADED, now, 0, None
        return BecameOverloaded(at=now, reason=reason)


__all__ = [
    "BecameOverloaded",
    "Load",
    "NewCallDecision",
    "OverloadLimits",
    "OverloadPolicy",
    "Recovered",
    "Transition",
]
