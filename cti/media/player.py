"""Plays a sound into a leg as RTP, paced at 20 ms a packet (asyncio adapter).

Used for music on hold while a caller waits in the queue or is held, and later for IVR
prompts. The frames come from the pure `WavSource`, the numbering from `RtpPacketizer`;
this module only keeps time. Pacing follows the loop clock with a running deadline, so
that a late wake-up does not stretch the audio.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import secrets
from collections.abc import Callable
from pathlib import Path

from cti.media.endpoint import RtpEndpoint
from cti.media.wavsource import RtpPacketizer, WavSource

log = logging.getLogger(__name__)

FRAME_S = 0.020
# Music on hold starts this long after it is asked for: a caller bridged to an agent
# within it (the usual case with a free agent) hears no snippet of music before the
# agent, and the hub spares the player and its packets.
MUSIC_GRACE_S = 0.1


@functools.lru_cache(maxsize=32)
def encoded_frames(sound: Path, payload_type: int) -> tuple[bytes, ...]:
    """A sound's 20 ms G.711 frames, encoded once per sound and codec and then shared by
    every call that plays it: encoding in Python costs milliseconds per call."""
    return tuple(WavSource(sound, payload_type, loop=False))


class Player:
    def __init__(
        self,
        endpoint: RtpEndpoint,
        sound: Path,
        payload_type: int,
        *,
        loop: bool = True,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        """`on_finished` runs when a sound played once has played to its end (not when
        it is stopped): what was waiting for a prompt goes on from there."""
        self._endpoint = endpoint
        self._on_finished = on_finished
        frames = encoded_frames(sound, payload_type)
        self._frames = itertools.cycle(frames) if loop else iter(frames)
        self._packetizer = RtpPacketizer(
            ssrc=secrets.randbits(32),
            payload_type=payload_type,
            sequence=secrets.randbits(16),
            timestamp=secrets.randbits(32),
        )
        self._task: asyncio.Task[None] | None = None
        self.packets_sent = 0

    @property
    def playing(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, *, after_s: float = 0.0) -> None:
        """Play from the next frame on, the first one `after_s` from now."""
        if not self.playing:
            self._task = asyncio.get_running_loop().create_task(self._play(after_s))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self._packetizer.pause(0)  # the next start begins a new talkspurt (marker bit)

    async def _play(self, after_s: float) -> None:
        loop = asyncio.get_running_loop()
        if after_s > 0:
            await asyncio.sleep(after_s)
        deadline = loop.time()
        for frame in self._frames:
            self._endpoint.send(self._packetizer.packetize(frame).serialize())
            self.packets_sent += 1
            deadline += FRAME_S
            delay = deadline - loop.time()
            if delay < -0.2:
                deadline = loop.time()  # far behind (a stalled loop): resync instead of bursting
                delay = 0.0
            await asyncio.sleep(max(delay, 0.0))
        self._task = None
        if self._on_finished is not None:
            self._on_finished()
