"""DTMF: RFC 4733 telephone-events to ordered digits, and the SIP INFO fallback (pure).

Owns the telephone-event payload format and the rule that turns a stream of event
packets -- with the start packet retransmitted, the end packet sent three times, packets
reordered or lost -- into each digit exactly once, in order. A digit is identified by the
RTP timestamp of its event (RFC 4733 §2.5.1.3). This module must never read a clock,
touch a socket or import asyncio: the RTP clock "now" comes in through `tick`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cti.media.rtp import RtpPacket

DIGITS = "0123456789*#ABCD"
MAX_SEGMENT_DURATION = 0xFFFF
_MIN_SEGMENT_GAP = 0x8000

_TS_MOD = 1 << 32
_TS_HALF = 1 << 31


class DtmfError(ValueError):
    """The peer sent a telephone-event payload that cannot be parsed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3); duration is in RTP clock units."""

    event: int
    end: bool = False
    volume: int = 10  # -dBm0, 0..63
    duration: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise ValueError(f"event code {self.event} does not fit in 8 bits")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"volume {self.volume} does not fit in 6 bits")
        if not 0 <= self.duration <= 0xFFFF:
            raise ValueError(f"duration {self.duration} does not fit in 16 bits")

    @property
    def digit(self) -> str | None:
        """The DTMF character of events 0-15, None for other events (flash, tones...)."""
        return DIGITS[self.event] if self.event < len(DIGITS) else None

    def serialize(self) -> bytes:
        return struct.pack("!BBH", self.event, (0x80 if self.end else 0) | self.volume, self.duration)


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """Parse the first event of a payload (later ones are RFC 4733 §2.5.1.5 redundancy)."""
    if len(payload) < 4:
        raise DtmfError(f"telephone-event payload is {len(payload)} bytes, expected at least 4")
    event, flags, duration = struct.unpack_from("!BBH", payload)
    return TelephoneEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitReceived:
    digit: str
    duration_ms: int
    rtp_timestamp: int


def _newer(a: int, b: int) -> bool:
    """Timestamp a comes after b, in RTP serial-number arithmetic."""
    return 0 < (a - b) % _TS_MOD < _TS_HALF


@dataclass(slots=True)
class _Pending:
    start: int  # timestamp of the first segment: the digit's identity
    segment: int  # timestamp of the current segment of a long event
    event: int
    duration: int  # total, across segments


class DtmfReceiver:
    """Digits of one RTP stream; reset (or make a new one) when the SSRC changes."""

    def __init__(self, *, clock_rate: int = 8000, silence_timeout: int = 4000) -> None:
        """`silence_timeout`: RTP clock units after an event's last known position
        without an end packet before the digit is given up on and emitted."""
        self._clock_rate = clock_rate
        self._silence_timeout = silence_timeout
        self.reset()

    def reset(self) -> None:
        self._current: _Pending | None = None
        self._last_emitted: int | None = None
        self.ignored = 0  # duplicates, retransmissions and packets too late to be used

    def receive_packet(self, packet: RtpPacket) -> list[DigitReceived]:
        return self.receive(packet.timestamp, packet.marker, parse_telephone_event(packet.payload))

    def receive(self, timestamp: int, marker: bool, event: TelephoneEvent) -> list[DigitReceived]:
        """Take one telephone-event packet as it arrives; return digits now complete."""
        out: list[DigitReceived] = []
        if self._last_emitted is not None and not _newer(timestamp, self._last_emitted):
            self.ignored += 1  # a repeat of a digit already given, or hopelessly late
            return out
        current = self._current
        if current is not None:
            if timestamp == current.segment:
                current.duration = max(current.duration, self._offset(current) + event.duration)
                if event.end:
                    self._emit(out)
                return out
            if not _newer(timestamp, current.segment):
                if _newer(timestamp, current.start) or timestamp == current.start:
                    self.ignored += 1  # an earlier segment of the current long event
                else:
                    # An older digit arriving after a newer one began: it is over, and
                    # the newer one has not been given yet, so order still holds.
                    self._emit_now(out, timestamp, event)
                return out
            if self._continues(current, timestamp, marker, event):
                # RFC 4733 long-duration event: it goes on in a new segment, without marker.
                current.segment = timestamp
                current.duration = max(current.duration, self._offset(current) + event.duration)
                if event.end:
                    self._emit(out)
                return out
            # A newer event began, so the current one has ended even if its end was lost.
            self._emit(out)
        self._current = _Pending(
            start=timestamp, segment=timestamp, event=event.event, duration=event.duration
        )
        if event.end:
            self._emit(out)
        return out

    def tick(self, now_ts: int) -> list[DigitReceived]:
        """Give up waiting for the end of the current digit once `silence_timeout` has passed.

        `now_ts` is the sender's RTP clock now, as estimated by the caller (for instance
        the last timestamp received plus the time elapsed since, in clock units).
        """
        out: list[DigitReceived] = []
        current = self._current
        if current is not None:
            quiet = (now_ts - current.start - current.duration) % _TS_MOD
            if self._silence_timeout <= quiet < _TS_HALF:
                self._emit(out)
        return out

    def _offset(self, current: _Pending) -> int:
        return (current.segment - current.start) % _TS_MOD

    @staticmethod
    def _continues(current: _Pending, timestamp: int, marker: bool, event: TelephoneEvent) -> bool:
        # Senders split only at (or near) the 16-bit duration limit, so a short gap
        # is a new press of the same key whose end and marker packets were lost.
        gap = (timestamp - current.segment) % _TS_MOD
        return (
            not marker
            and event.event == current.event
            and _MIN_SEGMENT_GAP <= gap <= MAX_SEGMENT_DURATION
        )

    def _emit(self, out: list[DigitReceived]) -> None:
        current = self._current
        assert current is not None
        self._current = None
        self._last_emitted = current.start
        digit = DIGITS[current.event] if current.event < len(DIGITS) else None
        if digit is not None:
            out.append(self._digit(digit, current.duration, current.start))

    def _emit_now(self, out: list[DigitReceived], timestamp: int, event: TelephoneEvent) -> None:
        # Later packets of this digit must be ignored too; the current (newer) digit is
        # still newer than this mark, so it is unaffected.
        self._last_emitted = timestamp
        if event.digit is not None:
            out.append(self._digit(event.digit, event.duration, timestamp))

    def _digit(self, digit: str, duration: int, timestamp: int) -> DigitReceived:
        duration_ms = duration * 1000 // self._clock_rate
        return DigitReceived(digit=digit, duration_ms=duration_ms, rtp_timestamp=timestamp)


def parse_sip_info_dtmf(content_type: str, body: bytes) -> str | None:
    """The digit of a SIP INFO carrying DTMF, or None when it carries none.

    application/dtmf-relay bodies read "Signal=5\\r\\nDuration=160"; application/dtmf
    bodies are the bare digit. Some phones send 10 and 11 for * and #.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "replace")
    if media_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip().lower() == "signal":
                return _digit_of(value.strip())
        return None
    if media_type == "application/dtmf":
        return _digit_of(text.strip())
    return None


def _digit_of(value: str) -> str | None:
    value = value.upper()
    if len(value) == 1 and value in DIGITS:
        return value
    if value.isdigit() and int(value) < len(DIGITS):
        return DIGITS[int(value)]
    return None
