"""From relayed RTP packets to the recording's stereo PCM (pure).

Owns: placing each side's packets on the recording's sample clock, decoding G.711,
silencing PCI-paused stretches, and handing out interleaved 16-bit stereo (caller left,
agent right) up to a position. The recording clock starts at 0 when recording starts
and follows the hub's clock (arrival positions come in as sample counts), so the file
lasts exactly as long as the recording ran, whatever the phones sent. Within a side,
packets are placed by RTP timestamp, anchored on the arrival of the stream's first
packet: reordering and loss inside `latency` cost nothing (the mix fills gaps with
silence); a new SSRC, a timestamp jump, or clock drift beyond `latency` re-anchors.
Must never: touch a file, a socket, a clock or asyncio. The recorder shell runs it in
a worker thread, since decoding and mixing are the CPU-heavy part of a recording.
"""

from __future__ import annotations

from dataclasses import dataclass

from cti.media.g711 import PCMA, PCMU, decoder_for
from cti.media.mix import MediaTap, Side
from cti.media.rtp import RtpError, is_rtcp, parse_rtp
from recordings.policy import SAMPLE_RATE, PausedInterval, PauseLog

_WRAP = 1 << 32
_HALF = 1 << 31
_AUDIO = (PCMU, PCMA)


@dataclass(slots=True)
class AssemblerStats:
    packets: int = 0  # audio packets placed
    not_rtp: int = 0  # unparseable or RTCP
    not_audio: int = 0  # telephone-event, comfort noise, other payload types: not recorded
    reanchors: int = 0  # new SSRC, timestamp jump or drift
    late_samples: int = 0  # arrived after their stretch was written


class _SideClock:
    """Maps one side's RTP timestamps onto the recording clock."""

    def __init__(self) -> None:
        self.ssrc: int | None = None
        self.ref_rtp = 0
        self.ref_pos = 0

    def place(self, ssrc: int, timestamp: int, arrival: int, *, latency: int, max_lead: int) -> tuple[int, bool]:
        """The packet's position, and whether the clock was (re)anchored for it."""
        if self.ssrc == ssrc:
            delta = (timestamp - self.ref_rtp + _HALF) % _WRAP - _HALF
            position = self.ref_pos + delta
            if arrival - latency <= position <= arrival + max_lead:
                if delta > 0:
                    self.ref_rtp, self.ref_pos = timestamp, position
                return position, False
        self.ssrc, self.ref_rtp, self.ref_pos = ssrc, timestamp, arrival
        return arrival, True


class StereoAssembler:
    """One recording's packets in, stereo PCM out.

    `latency`: samples a packet may arrive after its place on the clock and still be
    recorded; `drain_ready(now)` hands out everything older than that. `max_lead`:
    how far ahead of its arrival a packet's timestamp may place it before the side is
    re-anchored (a jump in the sender's timestamps)."""

    def __init__(self, *, latency: int = 2400, max_lead: int = SAMPLE_RATE) -> None:
        if latency < 0 or max_lead < 0:
            raise ValueError("latency and max_lead must not be negative")
        self._latency = latency
        self._max_lead = max_lead
        self._mix = MediaTap(start=0)
        self._clocks = {Side.CALLER: _SideClock(), Side.AGENT: _SideClock()}
        self._pauses = PauseLog()
        self._ended: int | None = None
        self.stats = AssemblerStats()

    @property
    def position(self) -> int:
        """Samples handed out so far (the length of the file's audio)."""
        return self._mix.position

    @property
    def paused(self) -> bool:
        return self._pauses.paused

    def packet(self, side: Side, data: bytes, arrival: int) -> None:
        """One relayed packet from `side`, arrived at sample `arrival` of the recording."""
        if self._ended is not None:
            return
        if is_rtcp(data):
            self.stats.not_rtp += 1
            return
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.stats.not_rtp += 1
            return
        if packet.payload_type not in _AUDIO or not packet.payload:
            # DTMF events are not recorded either: key presses can be card digits.
            self.stats.not_audio += 1
            return
        position, anchored = self._clocks[side].place(
            packet.ssrc, packet.timestamp, arrival, latency=self._latency, max_lead=self._max_lead
        )
        self.stats.reanchors += anchored
        self.stats.packets += 1
        self._mix.add(side, position, decoder_for(packet.payload_type)(packet.payload))

    def pause(self, at: int) -> bool:
        """PCI pause from sample `at`; True when it started one."""
        return self._pauses.pause(at)

    def resume(self, at: int) -> bool:
        return self._pauses.resume(at)

    def drain_ready(self, now: int) -> bytes:
        """Stereo PCM for everything that can no longer change: up to `now - latency`."""
        return self.drain(now - self._latency)

    def drain(self, until: int) -> bytes:
        start = self._mix.position
        if self._ended is not None:
            until = min(until, self._ended)
        if until <= start:
            return b""
        out = self._mix.drain(until)
        self.stats.late_samples = self._mix.late_samples
        mask = self._pauses.silence_mask(start, until)
        if not mask:
            return out
        buffer = bytearray(out)
        for offset, length in mask:
            buffer[4 * offset : 4 * (offset + length)] = bytes(4 * length)
        return bytes(buffer)

    def finish(self, end: int) -> bytes:
        """The rest of the recording, up to sample `end`; later packets are ignored."""
        end = max(end, self._mix.position)
        out = self.drain(end)
        self._ended = end
        if self._pauses.paused:
            self._pauses.resume(max(end, 0))
        return out

    def paused_intervals(self, until: int | None = None) -> tuple[PausedInterval, ...]:
        return self._pauses.intervals(until=until)
