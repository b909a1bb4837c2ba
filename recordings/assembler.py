"""From relayed RTP packets to the recording's stereo PCM (pure).

Owns: the recording's sample clock and its two sides (caller left, agent right: each
a `recordings.tracks.Track`, which places the side's packets and holds its G.711 until
drained), silencing PCI-paused stretches, and handing out interleaved 16-bit stereo up
to a position. The recording clock starts at 0 when recording starts and follows the
hub's clock (arrival times come in as arguments), so the file lasts exactly as long
as the recording ran, whatever the phones sent. Within a side, packets are placed by
RTP timestamp, anchored on the arrival of the stream's first packet: reordering and
loss inside `latency` cost nothing (gaps are silence); a new SSRC, a timestamp jump,
or clock drift beyond `latency` re-anchors. DTMF and other non-G.711 payloads are
never recorded.
Must never: touch a file, a socket, a clock or asyncio. The recorder shell runs it in
a worker thread, since decoding and mixing are the CPU-heavy part of a recording.
"""

from __future__ import annotations

from collections.abc import Sequence

from cti.media.mix import Side
from recordings.policy import SAMPLE_RATE, PausedInterval, PauseLog
from recordings.tracks import AssemblerStats, Track, Window

__all__ = ["AssemblerStats", "StereoAssembler"]


class StereoAssembler:
    """One recording's packets in, stereo PCM out.

    `latency`: samples a packet may arrive after its place on the clock and still be
    recorded; `drain_ready(now)` hands out everything older than that. `max_lead`:
    how far ahead of its arrival a packet's timestamp may place it before the side is
    re-anchored (a jump in the sender's timestamps); it also bounds the memory held."""

    def __init__(self, *, latency: int = 2400, max_lead: int = SAMPLE_RATE) -> None:
        if latency < 0 or max_lead < 0:
            raise ValueError("latency and max_lead must not be negative")
        self._latency = latency
        self._max_lead = max_lead
        self._window = Window(base=0, latency=latency, max_lead=max_lead)
        caller, agent = Track(), Track()
        self._channels = (caller, agent)  # left, right
        # Keyed by the enum and by its value: the media tap names sides by string.
        self._tracks: dict[object, Track] = {
            Side.CALLER: caller, Side.CALLER.value: caller, Side.AGENT: agent, Side.AGENT.value: agent,
        }
        self._pauses = PauseLog()
        self._ever_paused = False  # until then, drains skip the pause bookkeeping
        self._ended: int | None = None
        self.stats = AssemblerStats()

    @property
    def position(self) -> int:
        """Samples handed out so far (the length of the file's audio)."""
        return self._window.base

    @property
    def paused(self) -> bool:
        return self._pauses.paused

    def packet(self, side: Side, data: bytes, arrival: int) -> None:
        """One relayed packet from `side`, arrived at sample `arrival` of the recording."""
        self.feed(side, data, (len(data),), (arrival / SAMPLE_RATE,), origin=0.0)

    def feed(
        self, side: Side | str, data: bytes | bytearray, sizes: Sequence[int], arrivals: Sequence[float], *,
        origin: float,
    ) -> None:
        """One side's relayed packets in arrival order: end to end in `data`, with
        their sizes and their arrival times in seconds on any clock whose reading at
        the recording's first sample is `origin`. Sides other than caller and agent
        are ignored, and so is everything once the recording is finished."""
        track = self._tracks.get(side)
        if track is None or self._ended is not None or not sizes:
            return
        track.place(data, sizes, arrivals, origin=origin, window=self._window, stats=self.stats)

    def pause(self, at: int) -> bool:
        """PCI pause from sample `at`; True when it started one."""
        started = self._pauses.pause(at)
        self._ever_paused |= started
        return started

    def resume(self, at: int) -> bool:
        return self._pauses.resume(at)

    def drain_ready(self, now: int) -> bytes:
        """Stereo PCM for everything that can no longer change: up to `now - latency`."""
        return self.drain(now - self._latency)

    def drain(self, until: int) -> bytes:
        start = self._window.base
        if self._ended is not None:
            until = min(until, self._ended)
        count = until - start
        if count <= 0:
            return b""
        out = bytearray(4 * count)  # zeros: silence wherever a side sent nothing
        for channel, track in enumerate(self._channels):
            track.lay_out(out, 2 * channel, count)
        self._window = Window(base=until, latency=self._latency, max_lead=self._max_lead)
        if self._ever_paused:
            for offset, length in self._pauses.silence_mask(start, until):
                out[4 * offset : 4 * (offset + length)] = bytes(4 * length)
        return bytes(out)

    def finish(self, end: int) -> bytes:
        """The rest of the recording, up to sample `end`; later packets are ignored."""
        end = max(end, self._window.base)
        out = self.drain(end)
        self._ended = end
        if self._pauses.paused:
            self._pauses.resume(max(end, 0))
        return out

    def paused_intervals(self, until: int | None = None) -> tuple[PausedInterval, ...]:
        return self._pauses.intervals(until=until)
