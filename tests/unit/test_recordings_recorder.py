"""CallRecorder on a real event loop: synthetic RTP through the tap, in real time.

Caller sends 440 Hz, agent 880 Hz, with loss, reordering and a PCI pause; the file must
last as long as the recording ran, carry each tone on its own channel, and be silent
where paused. Decoding and mixing must happen off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import wave
from pathlib import Path

import pytest

from cti.media.g711 import PCMU
from recordings.recorder import CallRecorder, RecordingError
from tests.unit.test_recordings_assembler import (
    AGENT_HZ,
    CALLER_HZ,
    RATE,
    assert_tone,
    channels,
    rms,
    tone_packets,
)


def read_stereo(path: Path) -> tuple[list[int], list[int]]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        return channels(wav.readframes(wav.getnframes()))


async def play_call(
    recorder: CallRecorder, seconds: float, *, loss: float = 0.0, reorder: float = 0.0,
    pause_at: float | None = None, resume_at: float | None = None,
) -> None:
    """Both sides send a packet every 20 ms, paced on the loop clock like a phone."""
    rng = random.Random(3)
    caller = tone_packets(CALLER_HZ, seconds=seconds, ssrc=11, payload_type=PCMU)
    agent = tone_packets(AGENT_HZ, seconds=seconds, ssrc=22, sequence=65530, timestamp=2**32 - 800)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    held: list[tuple[str, bytes]] = []
    for k, (c, a) in enumerate(zip(caller, agent)):
        delay = t0 + k * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        now = k * 0.02
        if pause_at is not None and abs(now - pause_at) < 0.01:
            assert recorder.pause()
        if resume_at is not None and abs(now - resume_at) < 0.01:
            assert recorder.resume()
        for side, data in (("caller", c), ("agent", a)):
            if rng.random() < loss:
                continue
            if rng.random() < reorder:
                held.append((side, data))  # overtaken by the next packet
                continue
            recorder.tap(side, data)
        for side, data in held:
            recorder.tap(side, data)
        held.clear()


async def test_a_call_is_recorded_in_two_channels_for_exactly_its_time(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "2025" / "r.wav")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await recorder.start()
    await play_call(recorder, 3.0, loss=0.03, reorder=0.1, pause_at=1.0, resume_at=1.8)
    result = await recorder.stop()
    bridged = loop.time() - started
    assert abs(result.duration_s - bridged) < 0.2
    assert result.path == tmp_path / "2025" / "r.wav" and result.path.exists()
    assert not recorder.part_path.exists()
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert result.size_bytes == result.path.stat().st_size
    left, right = read_stereo(result.path)
    assert len(left) == round(result.duration_s * RATE)
    assert_tone(left[RATE // 4 : int(0.9 * RATE)], CALLER_HZ, AGENT_HZ)
    assert_tone(right[RATE // 4 : int(0.9 * RATE)], AGENT_HZ, CALLER_HZ)
    assert_tone(left[2 * RATE : int(2.7 * RATE)], CALLER_HZ, AGENT_HZ)
    assert_tone(right[2 * RATE : int(2.7 * RATE)], AGENT_HZ, CALLER_HZ)
    [paused] = result.paused_intervals
    assert paused.start_s == pytest.approx(1.0, abs=0.05) and paused.end_s == pytest.approx(1.8, abs=0.05)
    stretch = slice(paused.start, paused.end)
    assert rms(left[stretch]) < 1 and rms(right[stretch]) < 1
    assert result.stats.packets > 250 and result.dropped_packets == 0
    assert (result.ended_at - result.started_at).total_seconds() == pytest.approx(result.duration_s, abs=1e-3)


async def test_decoding_mixing_and_writing_happen_off_the_event_loop(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "r.wav", interval_s=0.05)
    threads: set[int] = set()
    assembler = recorder._assembler
    original = assembler.feed

    def spy(*args: object, **kwargs: object) -> None:
        threads.add(threading.get_ident())
        original(*args, **kwargs)  # type: ignore[arg-type]

    assembler.feed = spy  # type: ignore[method-assign]
    await recorder.start()
    await play_call(recorder, 0.6)
    await recorder.stop()
    assert threads and threading.get_ident() not in threads


async def test_the_file_grows_while_the_call_goes_on(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "r.wav", interval_s=0.05, latency_s=0.1)
    await recorder.start()
    await play_call(recorder, 1.0)
    size = recorder.part_path.stat().st_size
    assert size > 44 + 4 * RATE // 2  # over half a second already on disk
    result = await recorder.stop()
    assert result.size_bytes > size


async def test_a_full_queue_drops_packets_and_says_so(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "r.wav", max_queue=10, interval_s=10)
    await recorder.start()
    for data in tone_packets(CALLER_HZ, seconds=1, ssrc=1):
        recorder.tap("caller", data)
    result = await recorder.stop()
    assert result.dropped_packets == 40
    assert result.stats.packets == 10


async def test_pause_and_resume_only_while_recording_and_only_when_they_change_something(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "r.wav")
    assert not recorder.pause()  # not started
    await recorder.start()
    assert recorder.recording
    assert not recorder.resume()
    assert recorder.pause() and recorder.paused and not recorder.pause()
    await asyncio.sleep(0.3)
    result = await recorder.stop()
    assert not recorder.recording and not recorder.resume()
    assert len(result.paused_intervals) == 1
    assert result.paused_intervals[0].end_s == pytest.approx(result.duration_s, abs=0.01)
    assert await recorder.stop() is result  # idempotent
    left, right = read_stereo(result.path)
    assert set(left) == {0} == set(right)


async def test_a_recorder_never_overwrites_and_records_once(tmp_path: Path) -> None:
    (tmp_path / "r.wav").write_bytes(b"evidence")
    recorder = CallRecorder(tmp_path / "r.wav")
    with pytest.raises(RecordingError, match="cannot create"):
        await recorder.start()
    assert (tmp_path / "r.wav").read_bytes() == b"evidence"
    with pytest.raises(RecordingError):
        await recorder.start()
    with pytest.raises(RecordingError, match="never started"):
        await CallRecorder(tmp_path / "other.wav").stop()


async def test_a_write_failure_stops_the_recording_and_keeps_the_partial_file(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "r.wav", interval_s=0.05, latency_s=0.05)
    await recorder.start()
    assert recorder._writer is not None

    def disk_full(frames: bytes) -> None:
        raise OSError(28, "No space left on device")

    recorder._writer.append = disk_full  # type: ignore[method-assign]
    await play_call(recorder, 0.3)
    assert not recorder.recording
    with pytest.raises(RecordingError, match="No space left"):
        await recorder.stop()
    assert recorder.part_path.exists()
