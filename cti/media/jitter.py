"""A small jitter buffer: reorders one source's RTP packets by sequence number (pure).

Owns the hold-or-release decision: packets leave in sequence order, a gap is waited for
until `depth` later packets are held behind it (or, optionally, until the oldest of them
has waited `max_wait`), and then reported as a `PacketsLost` so that the consumer can
insert silence. It does no concealment and no playout timing, and must never touch a
clock, socket or asyncio: arrival and "now" come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from cti.media.rtp import RtpPacket

_SEQ_MOD = 1 << 16
_HALF = 1 << 15


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketsLost:
    """`count` packets from `first_sequence` on were skipped (sequence numbers wrap)."""

    first_sequence: int
    count: int


JitterOutput = RtpPacket | PacketsLost


class JitterBuffer:
    def __init__(self, *, depth: int = 3, max_wait: float | None = None, max_jump: int = 3000) -> None:
        """`depth`: packets held behind a gap before giving up on it.

        `max_wait`: optionally, how long (arrival units) a held packet may wait for a gap
        to fill, checked on `tick`. `max_jump`: a sequence jump this large is taken for a
        restart of the source rather than for that many lost packets.
        """
        if depth < 0:
            raise ValueError("depth must not be negative")
        self._depth = depth
        self._max_wait = max_wait
        self._max_jump = max_jump
        self._ssrc: int | None = None
        self._next: int | None = None
        self._held: dict[int, tuple[RtpPacket, float]] = {}
        self.released = 0
        self.lost = 0
        self.late = 0
        self.duplicates = 0
        self.restarts = 0

    @property
    def held(self) -> int:
        return len(self._held)

    def push(self, packet: RtpPacket, arrival: float) -> list[JitterOutput]:
        """Take one packet; return what can now be released, in order."""
        out: list[JitterOutput] = []
        if self._next is None or packet.ssrc != self._ssrc:
            if self._next is not None:
                out += self.flush()
                self.restarts += 1
            self._ssrc = packet.ssrc
            self._next = packet.sequence
        ahead = (packet.sequence - self._next) % _SEQ_MOD
        if ahead >= _HALF:
            # Behind what was already released: too late to be of use.
            self.late += 1
            return out
        if ahead >= self._max_jump:
            out += self.flush()
            self.restarts += 1
            self._next = packet.sequence
        if packet.sequence in self._held:
            self.duplicates += 1
            return out
        self._held[packet.sequence] = (packet, arrival)
        self._release_run(out)
        while len(self._held) > self._depth:
            self._skip_gap(out)
        return out

    def tick(self, now: float) -> list[JitterOutput]:
        """Give up on gaps whose held packets have waited `max_wait` or more."""
        out: list[JitterOutput] = []
        if self._max_wait is None:
            return out
        while self._held and min(a for _, a in self._held.values()) + self._max_wait <= now:
            self._skip_gap(out)
        return out

    def flush(self) -> list[JitterOutput]:
        """Release everything held, reporting the gaps between (end of a stream)."""
        out: list[JitterOutput] = []
        while self._held:
            self._skip_gap(out)
        return out

    def _release_run(self, out: list[JitterOutput]) -> None:
        assert self._next is not None
        while self._next in self._held:
            packet, _ = self._held.pop(self._next)
            out.append(packet)
            self.released += 1
            self._next = (self._next + 1) % _SEQ_MOD

    def _skip_gap(self, out: list[JitterOutput]) -> None:
        assert self._next is not None
        start = self._next
        first = min(self._held, key=lambda seq: (seq - start) % _SEQ_MOD)
        missing = (first - start) % _SEQ_MOD
        if missing:
            out.append(PacketsLost(first_sequence=start, count=missing))
            self.lost += missing
        self._next = first
        self._release_run(out)
