"""One side of a recording: where its RTP packets go on the recording clock, and its
G.711 until it is drained (pure).

Owns: the mapping of one stream's RTP timestamps onto the recording's sample clock
(anchored on the arrival of the stream's first packet; a new SSRC, a timestamp jump
or a drift out of the window re-anchors it), what is and is not recorded (only G.711;
RTCP, telephone events, comfort noise and anything unparseable are counted, never
placed), and the undrained stretch: one byte of code a sample plus one byte saying
which law (0 where nothing came, which drains as silence).
Must never: touch a file, a socket, a clock or asyncio; interleave channels or know
about pauses (that is the assembler's).

Why it is shaped this way: a hub records hundreds of calls at once, fifty packets a
second a side each, and Python pays per operation, not per byte. So a side's packets
come in one batch per interval, end to end in one buffer, and the usual batch (one
stream, consecutive timestamps, on time) is checked and placed with a few C-level
operations over the whole batch (`Struct.iter_unpack`, tuple counts and comparisons,
one join, one slice assignment) instead of a dozen Python operations per packet; any
other batch goes one packet at a time, which is the reference behaviour, and the bulk
path places exactly what it would (tests/unit/test_recordings_batches.py). Decoding
waits for the drain and goes a whole stretch at a time: one `translate` per output
byte and strided slice assignments into the stereo frames.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import count as count_from
from operator import sub

from cti.media.g711 import PCMA, PCMU, alaw_decode, ulaw_decode
from cti.media.rtp import RtpError, is_rtcp, parse_rtp
from recordings.policy import SAMPLE_RATE

_WRAP = 1 << 32
_HALF = 1 << 31
_HEADER = 12  # RTP header without CSRC, extension or padding
_FIRST_PLAIN = 0x80  # version 2, no padding, no extension, no CSRC
_HEAD = struct.Struct("!BBxxII").unpack_from  # first byte, second byte, timestamp, SSRC

# The law byte of a sample on the canvas; 0 means nothing arrived there (silence).
_LAW_OF = {PCMU: b"\x01", PCMA: b"\x02"}
_ULAW, _ALAW = 1, 2
_OTHER_LAW = {_ULAW: _ALAW, _ALAW: _ULAW}
_RUNS = re.compile(rb"\x01+|\x02+")


def _byte_tables(decode: object) -> tuple[bytes, bytes]:
    """`translate` tables giving the low and high byte of each code's 16-bit sample,
    taken from the codec module's own decoder so that both always agree."""
    assert callable(decode)
    pcm = decode(bytes(range(256)))
    return pcm[0::2], pcm[1::2]


_LOW: dict[int, bytes] = {}
_HIGH: dict[int, bytes] = {}
_LOW[_ULAW], _HIGH[_ULAW] = _byte_tables(ulaw_decode)
_LOW[_ALAW], _HIGH[_ALAW] = _byte_tables(alaw_decode)


@dataclass(slots=True)
class AssemblerStats:
    """What happened to a recording's packets (the assembler's figures, all counted
    where packets are placed)."""

    packets: int = 0  # audio packets placed
    not_rtp: int = 0  # unparseable or RTCP
    not_audio: int = 0  # telephone-event, comfort noise, other payload types: not recorded
    reanchors: int = 0  # new SSRC, timestamp jump or drift
    late_samples: int = 0  # arrived after their stretch was written


@dataclass(frozen=True, slots=True)
class Window:
    """Where packets may land, in samples of the recording clock: not before `base`
    (what was already drained), at most `latency` before their arrival and at most
    `max_lead` after it."""

    base: int
    latency: int
    max_lead: int


class Track:
    """One side: its stream's clock mapping and its undrained codes, from the
    assembler's position on."""

    __slots__ = ("codes", "laws", "ref_pos", "ref_rtp", "ssrc")

    def __init__(self) -> None:
        self.ssrc: int | None = None
        self.ref_rtp = 0
        self.ref_pos = 0
        self.codes = bytearray()
        self.laws = bytearray()

    def place(
        self, data: bytes | bytearray, sizes: Sequence[int], arrivals: Sequence[float], *,
        origin: float, window: Window, stats: AssemblerStats,
    ) -> None:
        """Packets in arrival order, end to end in `data`, with their sizes and arrival
        times (seconds on a clock that read `origin` at the recording's sample 0)."""
        if len(sizes) < 2 or not self._place_run(data, sizes, arrivals, origin, window, stats):
            self._place_each(data, sizes, arrivals, origin, window, stats)

    def lay_out(self, out: bytearray, byte: int, count: int) -> None:
        """Decode the first `count` samples into one channel of the stereo `out` (from
        `byte` within each 4-byte frame; untouched where nothing came) and drop them."""
        codes, laws = self.codes, self.laws
        have = min(count, len(codes))
        if not have:
            return
        law = laws[0]
        if law and laws.find(0, 0, have) < 0 and laws.find(_OTHER_LAW[law], 0, have) < 0:
            runs: Iterable[tuple[int, int, int]] = ((0, have, law),)  # the usual case: no gap, one law
        else:
            runs = [(m.start(), m.end(), laws[m.start()]) for m in _RUNS.finditer(laws, 0, have)]
        for start, end, run_law in runs:
            # Slicing a bytearray gives a bytearray, whose translate is the fast one.
            chunk = codes[start:end]
            out[4 * start + byte : 4 * end : 4] = chunk.translate(_LOW[run_law])
            out[4 * start + byte + 1 : 4 * end : 4] = chunk.translate(_HIGH[run_law])
        del codes[:have]
        del laws[:have]

    def _place_run(
        self, data: bytes | bytearray, sizes: Sequence[int], arrivals: Sequence[float],
        origin: float, window: Window, stats: AssemblerStats,
    ) -> bool:
        """The usual batch, in bulk: plain G.711 packets of the current stream, all of
        one size, with consecutive timestamps, each inside its window. Then they are
        all placed exactly where `_place_each` would place them, and True is returned;
        otherwise nothing is placed."""
        count = len(sizes)
        size = sizes[0]
        if size <= _HEADER or sizes.count(size) != count:
            return False
        firsts, seconds, stamps, ssrcs, payloads = zip(*_rows(size).iter_unpack(data))
        payload_type = seconds[0] & 0x7F
        law = _LAW_OF.get(payload_type)  # also rules out RTCP (types 192-223)
        if (
            law is None
            or ssrcs[0] != self.ssrc
            or ssrcs.count(self.ssrc) != count
            or firsts.count(_FIRST_PLAIN) != count
            # The marker bit starts a talkspurt; the payload type is the same.
            or seconds.count(payload_type) + seconds.count(payload_type | 0x80) != count
        ):
            return False
        step = size - _HEADER
        first = stamps[0]
        span = step * (count - 1)
        if first + span >= _WRAP or stamps != tuple(range(first, first + span + 1, step)):
            return False  # loss, reordering or a duplicate in the batch, or a wrap
        delta = (first - self.ref_rtp + _HALF) % _WRAP - _HALF
        position = self.ref_pos + delta
        offset = position - window.base
        if offset < 0:
            return False  # late: `_place_each` counts what is lost
        # How long after its place on the clock each packet arrived, in seconds; one
        # sample of margin covers the rounding of arrivals to samples.
        lags = list(map(sub, arrivals, count_from(origin + position / SAMPLE_RATE, step / SAMPLE_RATE)))
        if min(lags) * SAMPLE_RATE < 1 - window.max_lead or max(lags) * SAMPLE_RATE > window.latency - 1:
            return False  # drift or a jump: `_place_each` re-anchors
        codes, laws = self.codes, self.laws
        if offset > len(codes):
            gap = bytes(offset - len(codes))
            codes += gap
            laws += gap
        total = span + step
        codes[offset : offset + total] = b"".join(payloads)
        laws[offset : offset + total] = law * total
        if delta + span > 0:
            self.ref_rtp, self.ref_pos = first + span, position + span
        stats.packets += count
        return True

    def _place_each(
        self, data: bytes | bytearray, sizes: Sequence[int], arrivals: Sequence[float],
        origin: float, window: Window, stats: AssemblerStats,
    ) -> None:
        """Any batch, one packet at a time: the reference behaviour."""
        base, latency, max_lead = window.base, window.latency, window.max_lead
        placed = not_rtp = not_audio = reanchors = late = 0
        end_of_packet = 0
        for size, arrived in zip(sizes, arrivals):
            start, end_of_packet = end_of_packet, end_of_packet + size
            packet = data[start:end_of_packet]
            if size > _HEADER and packet[0] == _FIRST_PLAIN:
                second = packet[1]
                if 192 <= second <= 223:  # RTCP multiplexed on the port (RFC 5761 §4)
                    not_rtp += 1
                    continue
                law = _LAW_OF.get(second & 0x7F)
                if law is None:
                    # DTMF events are not recorded either: key presses can be card digits.
                    not_audio += 1
                    continue
                _, _, timestamp, ssrc = _HEAD(packet)
                payload = packet[_HEADER:]
            else:
                # Anything unusual (CSRC, extension, padding, too short, not version 2)
                # goes through the full parser, so that it is judged as everywhere else.
                if is_rtcp(bytes(packet)):
                    not_rtp += 1
                    continue
                try:
                    parsed = parse_rtp(bytes(packet))
                except RtpError:
                    not_rtp += 1
                    continue
                unusual_law = _LAW_OF.get(parsed.payload_type)
                if unusual_law is None or not parsed.payload:
                    not_audio += 1
                    continue
                law, timestamp, ssrc, payload = unusual_law, parsed.timestamp, parsed.ssrc, parsed.payload
            arrival = round((arrived - origin) * SAMPLE_RATE)
            if self.ssrc == ssrc:
                delta = (timestamp - self.ref_rtp + _HALF) % _WRAP - _HALF
                position = self.ref_pos + delta
                if arrival - latency <= position <= arrival + max_lead:
                    if delta > 0:
                        self.ref_rtp, self.ref_pos = timestamp, position
                else:
                    self.ref_rtp, self.ref_pos, position = timestamp, arrival, arrival
                    reanchors += 1
            else:
                self.ssrc, self.ref_rtp, self.ref_pos, position = ssrc, timestamp, arrival, arrival
                reanchors += 1
            placed += 1
            offset = position - base
            if offset < 0:
                # Part or all of it falls before what was already handed out: that is gone.
                late += min(-offset, len(payload))
                payload = payload[-offset:]
                if not payload:
                    continue
                offset = 0
            codes, laws = self.codes, self.laws
            if offset > len(codes):
                gap = bytes(offset - len(codes))  # nothing came there (yet): silence
                codes += gap
                laws += gap
            end = offset + len(payload)
            codes[offset:end] = payload
            laws[offset:end] = law * len(payload)
        stats.packets += placed
        stats.not_rtp += not_rtp
        stats.not_audio += not_audio
        stats.reanchors += reanchors
        stats.late_samples += late


@lru_cache(maxsize=16)
def _rows(size: int) -> struct.Struct:
    """Packets of `size` bytes end to end: first byte, second byte, timestamp, SSRC,
    payload (right only without CSRC, extension or padding, which `_place_run` checks)."""
    return struct.Struct(f"!BBxxII{size - _HEADER}s")
