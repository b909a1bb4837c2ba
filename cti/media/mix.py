"""The recording tap: two directions of a call as one stereo stream (pure).

Owns the alignment of decoded 16-bit PCM frames of the caller and the agent on one
sample clock, and their interleaving into 16-bit stereo (caller left, agent right) with
silence wherever a direction sent nothing. Timestamps are on a clock common to both
legs, in samples, without wrap-around -- each leg's RTP timestamps have their own random
origin, so mapping them onto this clock is the caller's job. This module must never
touch a file, socket, clock or asyncio; the recorder writes what `drain` returns.
"""

from __future__ import annotations

import enum


class Side(enum.Enum):
    CALLER = "caller"  # left channel
    AGENT = "agent"  # right channel


class MediaTap:
    def __init__(self, *, start: int = 0) -> None:
        self._next = start
        self._frames: dict[Side, dict[int, bytes]] = {Side.CALLER: {}, Side.AGENT: {}}
        self.late_samples = 0

    @property
    def position(self) -> int:
        """The timestamp of the first sample not yet drained."""
        return self._next

    def add(self, side: Side, timestamp: int, pcm: bytes) -> None:
        """One decoded frame (16-bit signed little-endian mono) starting at `timestamp`."""
        if len(pcm) % 2:
            raise ValueError(f"16-bit PCM has an odd length ({len(pcm)} bytes)")
        skip = self._next - timestamp
        if skip > 0:
            # Part or all of it falls before what was already written: that is gone.
            self.late_samples += min(skip, len(pcm) // 2)
            pcm, timestamp = pcm[2 * skip :], self._next
        if pcm:
            self._frames[side][timestamp] = bytes(pcm)

    def drain(self, until: int) -> bytes:
        """Interleaved stereo 16-bit PCM for samples [position, until); advances position."""
        count = until - self._next
        if count <= 0:
            return b""
        left = self._lay_out(Side.CALLER, until)
        right = self._lay_out(Side.AGENT, until)
        out = bytearray(4 * count)
        out[0::4], out[1::4] = left[0::2], left[1::2]
        out[2::4], out[3::4] = right[0::2], right[1::2]
        self._next = until
        return bytes(out)

    def _lay_out(self, side: Side, until: int) -> bytearray:
        canvas = bytearray(2 * (until - self._next))  # zeros: silence where nothing came
        frames = self._frames[side]
        for timestamp in sorted(t for t in frames if t < until):
            pcm = frames.pop(timestamp)
            offset = timestamp - self._next
            fits = min(len(pcm) // 2, until - timestamp)
            canvas[2 * offset : 2 * (offset + fits)] = pcm[: 2 * fits]
            if fits < len(pcm) // 2:
                frames[until] = pcm[2 * fits :]  # the rest belongs to the next drain
        return canvas
