"""The shared recording worker: one hand-off per interval for every recording, never
on the event loop, never two jobs at once, and one recording's failure is its own."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from recordings.recorder import CallRecorder
from recordings.worker import RecorderWorker
from tests.unit.test_recordings_assembler import (
    AGENT_HZ,
    CALLER_HZ,
    RATE,
    assert_tone,
    tone_packets,
)
from tests.unit.test_recordings_recorder import read_stereo


class CountingExecutor(Executor):
    """A thread pool that counts the jobs handed to it."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return self.pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)


class FakeRecording:
    def __init__(self, name: str, *, fail_at: int | None = None, busy_s: float = 0.0) -> None:
        self.name = name
        self.fail_at = fail_at
        self.busy_s = busy_s
        self.collected = 0
        self.processed: list[int] = []
        self.threads: set[int] = set()
        self.failures: list[BaseException] = []
        self.failed_on: set[int] = set()
        self.running = 0
        self.most_running = 0

    def collect(self) -> object:
        self.collected += 1
        return self.collected

    def process(self, collected: object) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            self.threads.add(threading.get_ident())
            time.sleep(self.busy_s)
            if self.fail_at is not None and collected == self.fail_at:
                raise OSError(28, "No space left on device")
            assert isinstance(collected, int)
            self.processed.append(collected)
        finally:
            self.running -= 1

    def failed(self, error: BaseException) -> None:
        self.failures.append(error)
        self.failed_on.add(threading.get_ident())


async def test_one_job_per_interval_serves_every_recording_off_the_loop() -> None:
    executor = CountingExecutor()
    worker = RecorderWorker(interval_s=0.05, executor=executor)
    recordings = [FakeRecording(str(k)) for k in range(5)]
    for recording in recordings:
        worker.attach(recording)
    await asyncio.sleep(0.33)
    for recording in recordings:
        worker.detach(recording)
        await worker.settled(recording)
    ticks = recordings[0].collected
    assert 2 <= ticks <= 7  # six on time; fewer on a busy machine
    assert executor.submitted == ticks  # one hand-off for all five, not five
    for recording in recordings:
        assert recording.collected == ticks and recording.processed == list(range(1, ticks + 1))
        assert threading.get_ident() not in recording.threads
    executor.shutdown()


async def test_a_failing_recording_is_detached_and_told_on_the_loop_while_the_others_go_on() -> None:
    worker = RecorderWorker(interval_s=0.05)
    healthy, failing = FakeRecording("ok"), FakeRecording("disk full", fail_at=2)
    worker.attach(healthy)
    worker.attach(failing)
    await asyncio.sleep(0.32)
    assert [type(e) for e in failing.failures] == [OSError]
    assert failing.failed_on == {threading.get_ident()}
    assert failing.collected == 2 and failing.processed == [1]
    assert healthy.collected >= 3 and not healthy.failures
    worker.detach(healthy)
    await worker.settled(healthy)


async def test_jobs_never_overlap_and_a_slow_job_delays_the_next_collection() -> None:
    worker = RecorderWorker(interval_s=0.02)
    slow = FakeRecording("slow disk", busy_s=0.1)
    worker.attach(slow)
    await asyncio.sleep(0.45)
    worker.detach(slow)
    await worker.settled(slow)
    assert slow.most_running == 1
    assert 2 <= slow.collected <= 6  # not one a tick: collections wait for the job
    assert slow.processed == list(range(1, slow.collected + 1))


async def test_settled_waits_for_the_job_that_holds_the_recording() -> None:
    worker = RecorderWorker(interval_s=0.01)
    slow = FakeRecording("slow", busy_s=0.15)
    worker.attach(slow)
    while not slow.running:
        await asyncio.sleep(0.005)
    worker.detach(slow)
    await worker.settled(slow)
    assert slow.running == 0 and slow.processed == [1]


async def test_the_timer_stops_when_nothing_is_attached() -> None:
    worker = RecorderWorker(interval_s=0.02)
    recording = FakeRecording("r")
    worker.attach(recording)
    await asyncio.sleep(0.07)
    worker.detach(recording)
    await worker.settled(recording)
    await asyncio.sleep(0.03)
    assert worker._timer is None
    collected = recording.collected
    await asyncio.sleep(0.06)
    assert recording.collected == collected


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RecorderWorker(interval_s=0)


async def test_calls_recorded_through_one_shared_worker_keep_their_own_audio(tmp_path: Path) -> None:
    executor = CountingExecutor()
    worker = RecorderWorker(interval_s=0.1, executor=executor)
    tones = {0: (CALLER_HZ, AGENT_HZ), 1: (AGENT_HZ, CALLER_HZ)}
    recorders = [CallRecorder(tmp_path / f"{k}.wav", worker=worker) for k in tones]
    for recorder in recorders:
        await recorder.start()
    streams = [
        (list(tone_packets(left, seconds=1.0, ssrc=10 + k)), list(tone_packets(right, seconds=1.0, ssrc=20 + k)))
        for k, (left, right) in tones.items()
    ]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for n in range(50):
        await asyncio.sleep(max(0.0, t0 + 0.02 * n - loop.time()))
        for recorder, (caller, agent) in zip(recorders, streams):
            recorder.tap("caller", caller[n])
            recorder.tap("agent", agent[n])
    submitted_while_running = executor.submitted
    results = [await recorder.stop() for recorder in recorders]
    # Two recorders, about ten intervals: two opens and about ten shared jobs, not twenty.
    assert submitted_while_running <= 2 + 12
    for result, (left_hz, right_hz) in zip(results, tones.values()):
        left, right = read_stereo(result.path)
        assert_tone(left[RATE // 4 : 3 * RATE // 4], left_hz, right_hz)
        assert_tone(right[RATE // 4 : 3 * RATE // 4], right_hz, left_hz)
        assert result.stats.packets == 100 and result.dropped_packets == 0
    executor.shutdown()


async def test_a_recorder_stopped_while_its_file_is_being_created_still_closes_it(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "r.wav", interval_s=0.05)
    starting = asyncio.create_task(recorder.start())
    await asyncio.sleep(0)  # start() is now waiting for the file
    result = await recorder.stop()
    await starting
    assert result.path.exists() and not recorder.part_path.exists()
    assert not recorder.recording
