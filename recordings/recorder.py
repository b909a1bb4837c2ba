"""`CallRecorder`: records one bridged call from the voice service's media tap.

Owns the asyncio side of a recording: the tap callback (runs inside the datagram
callback, so it only appends the packet and its arrival time to its side's bounded
queue), `start`/`pause`/`resume`/`stop`, and what the `RecorderWorker` does with the
recording every interval, in its executor: the pure `StereoAssembler` places, decodes
and mixes each side's batch and the file's writer (`StereoWavWriter`, or
`StereoFlacWriter` for FLAC) appends what can no longer change. The recording clock is the monotonic clock (the event loop's): the file lasts
from `start()` to `stop()`, to the sample.

The arrival time is read per packet (about 0.1 µs), not per batch: a stream's first
packet anchors it on the recording clock at its arrival, so a batch-wide time would
shift a channel by up to an interval against the other one. The packet itself is
kept, not copied: copying it onto a growing buffer in the tap was measured to cost
the event loop several times more (reallocations) than it saved the worker, and at
200 calls a copying tap measured no better in the hub (docs/benchmarks.md). Only in
a young process, while glibc still maps asyncio's 256 KiB receive buffer afresh for
every datagram, is a kept packet costly: a page the worker's thread unmaps.

The file is written as `<path>.part` and renamed to `<path>` once closed, hashed and
made read-only; a `.part` file is what a crash leaves (a valid WAV up to the last
append, see `recordings.writer`; a FLAC stream up to its last frame, `recordings.flac`).
Must never: decode, mix or write files on the event loop; keep the call in memory
(at most `max_queue` packets a side, and `interval_s + latency_s` of audio plus at most
a second ahead for a sender that runs early, are held); block in `tap`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from array import array
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, cast

from recordings.assembler import AssemblerStats, StereoAssembler
from recordings.policy import SAMPLE_RATE, PausedInterval
from recordings.worker import RecorderWorker
from recordings.writer import StereoWavWriter

log = logging.getLogger(__name__)

_now = time.monotonic  # asyncio's default loop clock; bound once, read per packet


class RecordingError(RuntimeError):
    """The recording could not be written; the partial `.part` file is left in place."""


class ClosedAudio(Protocol):
    @property
    def sha256(self) -> str: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def frames(self) -> int: ...


class AudioWriter(Protocol):
    """What the recorder needs from a file format's streaming writer."""

    def append(self, frames: bytes) -> None: ...
    def close(self) -> ClosedAudio: ...
    def abort(self) -> None: ...


def _flac_writer(path: Path, *, durable: bool = False) -> AudioWriter:
    # Imported on first use: soundfile loads libsndfile and numpy, which a hub that
    # records WAV never needs.
    from recordings.flac import StereoFlacWriter

    return StereoFlacWriter(path, durable=durable)


WRITERS: dict[str, Callable[..., AudioWriter]] = {"wav": StereoWavWriter, "flac": _flac_writer}


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingResult:
    path: Path
    sha256: str  # of the whole file
    size_bytes: int
    duration_s: float
    paused_intervals: tuple[PausedInterval, ...]
    started_at: datetime
    ended_at: datetime
    stats: AssemblerStats
    dropped_packets: int  # the tap's queue was full: the worker fell behind


class _SideQueue:
    """One side's packets since the last collection, with their arrival times
    (monotonic seconds; an array holds them without keeping a float object each)."""

    __slots__ = ("packets", "times")

    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.times = array("d")


Queues = dict[str, _SideQueue]


def _new_queues() -> Queues:
    return {"caller": _SideQueue(), "agent": _SideQueue()}


Control = tuple[bool, float]  # paused (else resumed), when
Collected = tuple[Queues, list[Control], int]


class CallRecorder:
    """`worker`: shared by the hub's recordings (the `RecordingService` passes its own);
    without one, the recorder gets a worker of its own with `interval_s` and `executor`.
    `latency_s`: how late a packet may arrive and still be recorded in its place.
    `file_format`: "wav" or "flac" (the path's suffix is the caller's to match)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interval_s: float = 1.0,
        latency_s: float = 0.3,
        max_queue: int = 5000,
        executor: Executor | None = None,
        worker: RecorderWorker | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        durable: bool = False,
        file_format: str = "wav",
    ) -> None:
        if file_format not in WRITERS:
            raise ValueError(f"unknown recording format {file_format!r}")
        self.path = Path(path)
        self.file_format = file_format
        self.part_path = self.path.with_name(self.path.name + ".part")
        self._worker = worker or RecorderWorker(interval_s=interval_s, executor=executor)
        self._latency = round(latency_s * SAMPLE_RATE)
        self._max_queue = max_queue
        self._wall_clock = wall_clock or (lambda: datetime.now(UTC))
        self._durable = durable
        self._queues: Queues = _new_queues()
        self._controls: list[Control] = []
        self._dropped = 0
        self._t0: float | None = None
        self._started_at: datetime | None = None
        self._paused = False
        self._accepting = False
        self._opening: asyncio.Future[AudioWriter] | None = None
        self._assembler = StereoAssembler(latency=self._latency)
        self._writer: AudioWriter | None = None
        self._error: BaseException | None = None
        self._result: RecordingResult | None = None

    # --- the tap: inside the datagram callback, so cheap -----------------------------

    def tap(self, side: str, packet: bytes) -> None:
        """`VoiceService.add_tap(call_id, recorder.tap)`."""
        if self._accepting:
            queue = self._queues.get(side)
            if queue is None:
                return
            if len(queue.packets) < self._max_queue:
                queue.packets.append(packet)
                queue.times.append(_now())
            else:
                self._dropped += 1

    # --- control -------------------------------------------------------------------

    @property
    def recording(self) -> bool:
        return self._accepting

    @property
    def paused(self) -> bool:
        return self._paused

    async def start(self) -> None:
        """Start now: the recording's first sample is this moment."""
        if self._t0 is not None:
            raise RecordingError("a recorder records once")
        self._t0 = _now()
        self._started_at = self._wall_clock()
        self._accepting = True
        self._opening = asyncio.ensure_future(self._worker.run(self._open))
        try:
            self._writer = await asyncio.shield(self._opening)
        except OSError as err:
            self._accepting = False
            raise RecordingError(f"cannot create {self.part_path}: {err}") from err
        if self._accepting:  # not stopped while the file was being created
            self._worker.attach(self)

    def pause(self) -> bool:
        """PCI pause from now until `resume`: silence in the file. True when it paused."""
        return self._control(paused=True)

    def resume(self) -> bool:
        return self._control(paused=False)

    async def stop(self) -> RecordingResult:
        """Stop now, finish and close the file; idempotent."""
        if self._result is not None:
            return self._result
        if self._t0 is None or self._started_at is None:
            raise RecordingError("the recorder was never started")
        end = round((_now() - self._t0) * SAMPLE_RATE)
        self._accepting = False
        self._worker.detach(self)
        if self._opening is not None:
            # Stopped while the file was being created: wait for it, then finish it.
            await asyncio.wait([self._opening])
            if self._writer is None and not self._opening.cancelled() and self._opening.exception() is None:
                self._writer = self._opening.result()
        if self._writer is None:
            raise RecordingError(f"recording {self.path} never started: its file could not be created")
        await self._worker.settled(self)
        if self._error is not None:
            await self._worker.run(self._abort)
            raise RecordingError(f"recording {self.path} failed: {self._error}") from self._error
        queues, controls, _ = self.collect()
        try:
            closed = await self._worker.run(self._finish, queues, controls, end)
        except Exception as err:
            await self._worker.run(self._abort)
            raise RecordingError(f"recording {self.path} failed: {err}") from err
        duration_s = closed.frames / SAMPLE_RATE
        self._result = RecordingResult(
            path=self.path,
            sha256=closed.sha256,
            size_bytes=closed.size_bytes,
            duration_s=duration_s,
            paused_intervals=self._assembler.paused_intervals(),
            started_at=self._started_at,
            ended_at=self._started_at + timedelta(seconds=duration_s),
            stats=replace(self._assembler.stats),
            dropped_packets=self._dropped,
        )
        if self._dropped:
            log.warning("recording %s: %d packets dropped, the worker fell behind", self.path, self._dropped)
        return self._result

    def _control(self, *, paused: bool) -> bool:
        if not self._accepting or self._paused == paused:
            return False
        self._paused = paused
        self._controls.append((paused, _now()))
        return True

    # --- the worker's side (see recordings.worker.Recording) -------------------------

    def collect(self) -> Collected:
        """On the event loop: the packets and controls gathered so far, and the time."""
        assert self._t0 is not None
        queues, self._queues = self._queues, _new_queues()
        controls, self._controls = self._controls, []
        return queues, controls, round((_now() - self._t0) * SAMPLE_RATE)

    def process(self, collected: object) -> None:
        """In the worker's executor: place, decode and mix a batch, append what is ready."""
        assert self._writer is not None
        queues, controls, now = cast(Collected, collected)
        self._feed(queues, controls)
        self._writer.append(self._assembler.drain_ready(now))

    def failed(self, error: BaseException) -> None:
        """On the event loop: disk full, permissions... stop taking packets."""
        log.error("recording %s failed: %s", self.path, error)
        self._error = error
        self._accepting = False

    # --- in the executor -----------------------------------------------------------

    def _open(self) -> AudioWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            raise FileExistsError(f"{self.path} already exists")
        return WRITERS[self.file_format](self.part_path, durable=self._durable)

    def _feed(self, queues: Queues, controls: list[Control]) -> None:
        assert self._t0 is not None
        assembler, t0 = self._assembler, self._t0
        # Pauses only mark stretches of the clock, which are silenced when drained, so
        # they need not be interleaved with the packets: only to come before the drain.
        for paused, when in controls:
            at = max(0, round((when - t0) * SAMPLE_RATE))
            if paused:
                assembler.pause(at)
            else:
                assembler.resume(at)
        for side, queue in queues.items():
            packets = queue.packets
            if packets:
                assembler.feed(side, b"".join(packets), list(map(len, packets)), queue.times, origin=t0)

    def _finish(self, queues: Queues, controls: list[Control], end: int) -> ClosedFile:
        assert self._writer is not None
        self._feed(queues, controls)
        self._writer.append(self._assembler.finish(end))
        closed = self._writer.close()
        os.replace(self.part_path, self.path)
        return ClosedFile(frames=closed.frames, sha256=closed.sha256, size_bytes=closed.size_bytes)

    def _abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


@dataclass(frozen=True, slots=True)
class ClosedFile:
    frames: int
    sha256: str
    size_bytes: int
