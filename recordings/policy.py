"""Recording rules: when a call is recorded, how long it is kept, what blocks deletion,
and the bookkeeping of PCI pauses (pure).

Owns: the queue's `RecordingPolicy` (always / never / on demand) and what it allows
the hub and the agent to do; retention dates (five years by default, up to seven when
an authority asks: MiFID II art. 16(7)); the purge decision (retention passed and no
legal hold); the paused stretches of one recording on its own sample clock.
Must never: touch a file, a database, a clock or asyncio. Time comes in as arguments.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

SAMPLE_RATE = 8000

DEFAULT_RETENTION_YEARS = 5
MAX_RETENTION_YEARS = 7  # "up to seven years where requested by the competent authority"
MIN_RETENTION_YEARS = 1


class PolicyError(ValueError):
    """A rule was asked to do something it forbids (a local misuse, not a peer's fault)."""


class RecordingMode(enum.Enum):
    ALWAYS = "always"
    NEVER = "never"
    ON_DEMAND = "on_demand"  # the agent starts it from the desktop


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingPolicy:
    """A queue's recording policy."""

    mode: RecordingMode = RecordingMode.ALWAYS
    retention_years: int = DEFAULT_RETENTION_YEARS
    # The "this call may be recorded" notice before an agent is rung. Only where the
    # call may be recorded: announcing a recording that cannot happen misleads callers.
    announce: bool = True

    def __post_init__(self) -> None:
        if not MIN_RETENTION_YEARS <= self.retention_years <= MAX_RETENTION_YEARS:
            raise PolicyError(
                f"retention of {self.retention_years} years is outside "
                f"{MIN_RETENTION_YEARS}..{MAX_RETENTION_YEARS}"
            )

    @classmethod
    def parse(cls, mode: str, retention_years: int = DEFAULT_RETENTION_YEARS, announce: bool = True) -> RecordingPolicy:
        """From configuration text ("always", "never", "on_demand"/"on-demand")."""
        try:
            parsed = RecordingMode(mode.strip().lower().replace("-", "_"))
        except ValueError:
            raise PolicyError(f"recording mode {mode!r} is not one of always, never, on_demand") from None
        return cls(mode=parsed, retention_years=retention_years, announce=announce)

    @property
    def announces(self) -> bool:
        return self.announce and self.mode is not RecordingMode.NEVER

    @property
    def starts_when_bridged(self) -> bool:
        """The hub starts recording as soon as the legs are bridged."""
        return self.mode is RecordingMode.ALWAYS

    @property
    def agent_may_start(self) -> bool:
        return self.mode is RecordingMode.ON_DEMAND

    @property
    def agent_may_stop(self) -> bool:
        # Under "always" the agent may only pause (PCI), never stop: the call must be kept.
        return self.mode is RecordingMode.ON_DEMAND


def add_years(moment: datetime, years: int) -> datetime:
    """The same date `years` later; 29 February becomes 1 March (never earlier: a
    retention period rounded down would delete a record before it is due)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, month=3, day=1)


def retention_until(ended_at: datetime, retention_years: int) -> datetime:
    """The first moment a recording may be purged, counted from the end of the call."""
    return add_years(ended_at, retention_years)


def check_extension(ended_at: datetime, current: datetime, requested: datetime) -> datetime:
    """Validate a retention extension: never shorter, never beyond seven years."""
    if requested < current:
        raise PolicyError("retention can only be extended, never shortened")
    if requested > add_years(ended_at, MAX_RETENTION_YEARS):
        raise PolicyError(
            f"retention beyond {MAX_RETENTION_YEARS} years needs a legal hold, not an extension"
        )
    return requested


class PurgeVerdict(enum.Enum):
    PURGE = "purge"
    KEEP_RETENTION = "retention"  # not due yet
    KEEP_LEGAL_HOLD = "legal_hold"  # due, but held
    ALREADY_PURGED = "already_purged"


def purge_verdict(
    *,
    now: datetime,
    ended_at: datetime,
    retention_years: int,
    retention_until: datetime,
    legal_hold: bool,
    deleted_at: datetime | None,
) -> PurgeVerdict:
    """Whether a recording may be deleted now. The chained `retention_years` sets a floor
    that an edited `retention_until` cannot lower."""
    if deleted_at is not None:
        return PurgeVerdict.ALREADY_PURGED
    due = max(retention_until, add_years(ended_at, retention_years))
    if now < due:
        return PurgeVerdict.KEEP_RETENTION
    if legal_hold:
        return PurgeVerdict.KEEP_LEGAL_HOLD
    return PurgeVerdict.PURGE


# PCI pauses ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PausedInterval:
    """A stretch of a recording, in samples from its start, written as silence."""

    start: int
    end: int

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE

    def as_ms(self) -> list[int]:
        """[start_ms, end_ms]: the form kept in the recording's metadata."""
        return [self.start * 1000 // SAMPLE_RATE, -(-self.end * 1000 // SAMPLE_RATE)]


class PauseLog:
    """The paused stretches of one recording. Positions are samples on the recording's
    clock; pausing while paused and resuming while recording are no-ops (the desktop and
    the API may both send them)."""

    def __init__(self) -> None:
        self._closed: list[PausedInterval] = []
        self._open_at: int | None = None
        self._last = 0

    @property
    def paused(self) -> bool:
        return self._open_at is not None

    def pause(self, at: int) -> bool:
        """True when this started a pause."""
        self._advance(at)
        if self._open_at is not None:
            return False
        self._open_at = at
        return True

    def resume(self, at: int) -> bool:
        """True when this ended a pause."""
        self._advance(at)
        if self._open_at is None:
            return False
        if at > self._open_at:
            self._closed.append(PausedInterval(start=self._open_at, end=at))
        self._open_at = None
        return True

    def intervals(self, until: int | None = None) -> tuple[PausedInterval, ...]:
        """Closed stretches, plus the open one cut at `until` when given."""
        out = list(self._closed)
        if self._open_at is not None and until is not None and until > self._open_at:
            out.append(PausedInterval(start=self._open_at, end=until))
        return tuple(out)

    def silence_mask(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) to silence, as (offset, length) from `start`.

        An open pause silences everything from where it began: audio must never leak
        into the file while the agent is taking card details."""
        spans: list[tuple[int, int]] = []
        for interval in self.intervals(until=end if self._open_at is not None else None):
            lo, hi = max(start, interval.start), min(end, interval.end)
            if hi > lo:
                spans.append((lo - start, hi - lo))
        return spans

    def _advance(self, at: int) -> None:
        if at < self._last:
            raise PolicyError(f"pause bookkeeping went back in time ({at} < {self._last})")
        self._last = at
