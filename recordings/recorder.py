"""`CallRecorder`: records one bridged call from the voice service's media tap.

Owns the asyncio side of a recording: the tap callback (runs inside the datagram
callback, so it only appends `(side, packet, arrival)` to a bounded list), a background
task that every `interval_s` hands the batch to a worker thread where the pure
`StereoAssembler` parses, decodes and mixes it and the `StereoWavWriter` appends it, and
`start`/`pause`/`resume`/`stop`. The recording clock is the event loop's clock: the
file lasts from `start()` to `stop()`, to the sample.

The file is written as `<path>.part` and renamed to `<path>` once closed, hashed and
made read-only; a `.part` file is what a crash leaves (a valid WAV up to the last
append, see `recordings.writer`).
Must never: decode, mix or write files on the event loop; keep the call in memory
(at most `max_queue` packets and `latency_s` of audio are held); block in `tap`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

from cti.media.mix import Side
from recordings.assembler import AssemblerStats, StereoAssembler
from recordings.policy import SAMPLE_RATE, PausedInterval
from recordings.writer import StereoWavWriter

log = logging.getLogger(__name__)

T = TypeVar("T")
_PACKET, _PAUSE, _RESUME = 0, 1, 2
_SIDES = {"caller": Side.CALLER, "agent": Side.AGENT}


class RecordingError(RuntimeError):
    """The recording could not be written; the partial `.part` file is left in place."""


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


Item = tuple[int, Side | None, bytes, float]


class CallRecorder:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interval_s: float = 0.2,
        latency_s: float = 0.3,
        max_queue: int = 5000,
        executor: Executor | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        durable: bool = False,
    ) -> None:
        self.path = Path(path)
        self.part_path = self.path.with_name(self.path.name + ".part")
        self._interval = interval_s
        self._latency = round(latency_s * SAMPLE_RATE)
        self._max_queue = max_queue
        self._executor = executor
        self._wall_clock = wall_clock or (lambda: datetime.now(timezone.utc))
        self._durable = durable
        self._queue: list[Item] = []
        self._queued_packets = 0
        self._dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0: float | None = None
        self._started_at: datetime | None = None
        self._paused = False
        self._accepting = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._assembler = StereoAssembler(latency=self._latency)
        self._writer: StereoWavWriter | None = None
        self._error: BaseException | None = None
        self._result: RecordingResult | None = None

    # --- the tap: inside the datagram callback, so cheap -----------------------------

    def tap(self, side: str, packet: bytes) -> None:
        """`VoiceService.add_tap(call_id, recorder.tap)`."""
        if not self._accepting or self._loop is None:
            return
        if self._queued_packets >= self._max_queue:
            self._dropped += 1
            return
        self._queued_packets += 1
        self._queue.append((_PACKET, _SIDES.get(side), packet, self._loop.time()))

    # --- control -------------------------------------------------------------------

    @property
    def recording(self) -> bool:
        return self._accepting

    @property
    def paused(self) -> bool:
        return self._paused

    async def start(self) -> None:
        """Start now: the recording's first sample is this moment."""
        if self._loop is not None:
            raise RecordingError("a recorder records once")
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._started_at = self._wall_clock()
        self._accepting = True
        try:
            self._writer = await self._in_thread(self._open)
        except OSError as err:
            self._accepting = False
            raise RecordingError(f"cannot create {self.part_path}: {err}") from err
        self._task = asyncio.create_task(self._run(), name=f"recorder {self.path.name}")

    def pause(self) -> bool:
        """PCI pause from now until `resume`: silence in the file. True when it paused."""
        return self._control(_PAUSE, want_paused=True)

    def resume(self) -> bool:
        return self._control(_RESUME, want_paused=False)

    async def stop(self) -> RecordingResult:
        """Stop now, finish and close the file; idempotent."""
        if self._result is not None:
            return self._result
        if self._loop is None or self._t0 is None or self._started_at is None:
            raise RecordingError("the recorder was never started")
        end = round((self._loop.time() - self._t0) * SAMPLE_RATE)
        self._accepting = False
        self._stopping.set()
        if self._task is not None:
            await self._task
        if self._error is not None:
            await self._in_thread(self._abort)
            raise RecordingError(f"recording {self.path} failed: {self._error}") from self._error
        batch = self._take()
        try:
            closed = await self._in_thread(self._finish, batch, end)
        except Exception as err:
            await self._in_thread(self._abort)
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

    def _control(self, kind: int, *, want_paused: bool) -> bool:
        if not self._accepting or self._loop is None or self._paused == want_paused:
            return False
        self._paused = want_paused
        self._queue.append((kind, None, b"", self._loop.time()))
        return True

    # --- background ----------------------------------------------------------------

    async def _run(self) -> None:
        assert self._loop is not None and self._t0 is not None
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            except TimeoutError:
                pass
            if self._stopping.is_set():
                return
            batch = self._take()
            now = round((self._loop.time() - self._t0) * SAMPLE_RATE)
            try:
                await self._in_thread(self._process, batch, now)
            except Exception as err:  # disk full, permissions: stop taking packets
                log.error("recording %s failed: %s", self.path, err)
                self._error = err
                self._accepting = False
                return

    def _take(self) -> list[Item]:
        batch, self._queue = self._queue, []
        self._queued_packets = 0
        return batch

    async def _in_thread(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # --- worker thread: one call at a time per recorder ----------------------------

    def _open(self) -> StereoWavWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            raise FileExistsError(f"{self.path} already exists")
        return StereoWavWriter(self.part_path, durable=self._durable)

    def _feed(self, batch: list[Item]) -> None:
        assert self._t0 is not None
        assembler, t0 = self._assembler, self._t0
        for kind, side, data, arrival in batch:
            at = max(0, round((arrival - t0) * SAMPLE_RATE))
            if kind == _PACKET:
                if side is not None:
                    assembler.packet(side, data, at)
            elif kind == _PAUSE:
                assembler.pause(at)
            else:
                assembler.resume(at)

    def _process(self, batch: list[Item], now: int) -> None:
        assert self._writer is not None
        self._feed(batch)
        self._writer.append(self._assembler.drain_ready(now))

    def _finish(self, batch: list[Item], end: int) -> "ClosedFile":
        assert self._writer is not None
        self._feed(batch)
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
