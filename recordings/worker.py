"""`RecorderWorker`: the recording work of many calls, in one hand-off per interval
(asyncio shell).

Owns the cadence of recording: every `interval_s`, one callback on the event loop
collects what each attached recording gathered since the last time (a list swap each)
and hands all of it to the executor as one job, which processes the recordings one
after the other (placing, decoding, mixing, appending to the file). Recordings that
fail are reported back on the event loop.

Why one job for all: a timer task and an executor call per recording per interval
cost a task wake-up, a future, a thread hand-off and a wake-up of the loop each, five
times a second per call, and the GIL then passes back and forth between the loop and
several threads; at hundreds of calls that cost more than the recording itself.
A job never overlaps the next: while one runs (a slow disk), the recordings' bounded
queues fill instead of jobs piling up. Why one second by default: a job pays a fixed
price per recording (the write and the header patch and the digest, each of which
lets the GIL go to the busy event loop and then waits to get it back; a few dozen
calls to place and decode) that a longer interval spreads over more packets and
larger C-level batches: the job's CPU at 200 calls was 3.4 % of a core at 0.5 s and
2.7 % at 1 s (docs/benchmarks.md), and 0.5 s had already roughly halved it against
0.2 s. What a crash can lose stays bounded: the interval plus the recorder's latency,
about 1.3 s of audio with the defaults.
Must never: run recording work on the event loop, or hand one recording to two jobs
at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Recording(Protocol):
    """What the worker needs from a recording (`CallRecorder` is one)."""

    def collect(self) -> object:
        """On the event loop: take what was gathered since the last call."""

    def process(self, collected: object) -> None:
        """In the executor: do the work; raising fails the recording."""

    def failed(self, error: BaseException) -> None:
        """On the event loop: `process` raised `error`; the recording is detached."""


Work = list[tuple[Recording, object]]
Failures = list[tuple[Recording, BaseException]]


def _process_all(work: Work) -> Failures:
    failures: Failures = []
    for recording, collected in work:
        try:
            recording.process(collected)
        except Exception as err:  # noqa: BLE001 -- one recording's disk or data: the others go on
            failures.append((recording, err))
    return failures


class RecorderWorker:
    """Serves every attached recording; `executor` None is the loop's default one.
    The timer runs only while something is attached."""

    def __init__(self, *, interval_s: float = 1.0, executor: Executor | None = None) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self._executor = executor
        self._recordings: dict[Recording, None] = {}  # insertion-ordered set
        self._timer: asyncio.TimerHandle | None = None
        self._next_at = 0.0
        self._job: asyncio.Future[Failures] | None = None
        self._in_job: set[Recording] = set()
        self._job_done = asyncio.Event()

    @property
    def attached(self) -> int:
        return len(self._recordings)

    def attach(self, recording: Recording) -> None:
        """From the next interval on, `recording` is collected and processed."""
        self._recordings[recording] = None
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._next_at = loop.time() + self.interval_s
            self._timer = loop.call_at(self._next_at, self._tick)

    def detach(self, recording: Recording) -> None:
        """No more jobs for `recording`; one may still be running: see `settled`."""
        self._recordings.pop(recording, None)

    async def settled(self, recording: Recording) -> None:
        """Return once no job is working on `recording`."""
        while recording in self._in_job:
            self._job_done.clear()
            await self._job_done.wait()

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """One-off work for a recording (open, finish) in the same executor."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        """Stop the timer (at shutdown, once the recordings are stopped)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        if not self._recordings:
            return
        loop = asyncio.get_running_loop()
        if self._job is None:
            work: Work = [(recording, recording.collect()) for recording in self._recordings]
            self._in_job = set(self._recordings)
            self._job = job = loop.run_in_executor(self._executor, _process_all, work)
            job.add_done_callback(self._finished)
        # A fixed cadence; after a stall, not sooner than half an interval from now.
        self._next_at = max(self._next_at + self.interval_s, loop.time() + self.interval_s / 2)
        self._timer = loop.call_at(self._next_at, self._tick)

    def _finished(self, job: asyncio.Future[Failures]) -> None:
        involved, self._in_job, self._job = self._in_job, set(), None
        failures: Failures
        if job.cancelled():
            failures = [(r, RuntimeError("the recording job was cancelled")) for r in involved]
        elif (error := job.exception()) is not None:
            log.error("recording job failed: %r", error)
            failures = [(r, error) for r in involved]
        else:
            failures = job.result()
        for recording, err in failures:
            self.detach(recording)
            recording.failed(err)
        self._job_done.set()
        if not self._recordings:
            self.close()
