"""The streaming FLAC writer (CTIHUB_RECORDING_FORMAT=flac): lossless, written as the
call goes, checked at close; and a whole recording through the recorder in FLAC."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import struct
from pathlib import Path

import pytest
import soundfile

from recordings.flac import (
    FlacWriterError,
    StereoFlacWriter,
    decoded_md5,
    read_stream_info,
)
from recordings.recorder import CallRecorder
from tests.unit.test_recordings_assembler import (
    AGENT_HZ,
    CALLER_HZ,
    RATE,
    assert_tone,
    rms,
    tone,
)
from tests.unit.test_recordings_recorder import play_call


def speechlike(count: int, seed: int) -> bytes:
    """Two different, busy channels (tones plus a deterministic noise), full range."""
    left, right = tone(CALLER_HZ, seed, count, 12000), tone(AGENT_HZ, seed, count, 9000)
    l_samples = struct.unpack(f"<{count}h", left)
    r_samples = struct.unpack(f"<{count}h", right)
    noise = [((n * 2654435761 + seed) >> 7) % 2001 - 1000 for n in range(count)]
    out = []
    for a, b, c in zip(l_samples, r_samples, noise):
        out += [max(-32768, min(32767, a + c)), max(-32768, min(32767, b - c))]
    return struct.pack(f"<{2 * count}h", *out)


def decode(path: Path) -> bytes:
    data, rate = soundfile.read(str(path), dtype="int16")
    assert rate == RATE and data.shape[1] == 2
    return data.astype("<i2").tobytes()


def test_decoded_samples_are_exactly_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "r.flac"
    writer = StereoFlacWriter(path)
    written = b""
    for k in range(1, 8):
        chunk = speechlike(1000 * k, seed=k)
        writer.append(chunk)
        written += chunk
    writer.append_silence(4000)  # a PCI pause
    written += bytes(4 * 4000)
    closed = writer.close()
    assert decode(path) == written  # lossless, sample for sample
    assert closed.frames == len(written) // 4 and closed.duration_s == pytest.approx(len(written) / 4 / RATE)
    assert closed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert closed.size_bytes == os.path.getsize(path) < len(written) * 0.9  # and it is compressed
    assert closed.audio_md5 == hashlib.md5(written).hexdigest() == decoded_md5(path)
    info = read_stream_info(path.read_bytes()[:42])
    assert (info.sample_rate, info.channels, info.bits_per_sample, info.total_frames) == (8000, 2, 16, len(written) // 4)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o440
    assert soundfile.info(str(path)).format == "FLAC"


def test_the_file_grows_while_the_call_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "r.flac.part"
    writer = StereoFlacWriter(path)
    sizes = []
    for k in range(6):
        writer.append(speechlike(RATE // 2, seed=k))  # half a second per append, as the worker does
        sizes.append(os.path.getsize(path))
    # Encoded frames reach the file as they are finished, not at the end.
    assert sizes[-1] > 20_000 and sizes == sorted(sizes) and sizes[0] < sizes[-1]
    writer.close()


def test_odd_frames_a_closed_writer_and_an_existing_file_are_refused(tmp_path: Path) -> None:
    writer = StereoFlacWriter(tmp_path / "r.flac")
    with pytest.raises(FlacWriterError, match="whole number"):
        writer.append(b"\x00\x01\x02")
    writer.append(speechlike(800, 1))
    closed = writer.close()
    assert writer.close() is closed
    with pytest.raises(FlacWriterError, match="closed"):
        writer.append(speechlike(10, 1))
    with pytest.raises(FileExistsError):
        StereoFlacWriter(tmp_path / "r.flac")


def test_a_file_changed_behind_the_writers_back_fails_the_close(tmp_path: Path) -> None:
    path = tmp_path / "r.flac"
    writer = StereoFlacWriter(path)
    writer.append(speechlike(3 * RATE, 2))
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # someone edits the audio already written
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 0x40]))
    writer.append(speechlike(RATE, 3))
    with pytest.raises(FlacWriterError):
        writer.close()


async def test_a_call_recorded_in_flac_has_both_channels_and_a_silent_pause(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "r.flac", file_format="flac")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await recorder.start()
    await play_call(recorder, 3.0, loss=0.02, pause_at=1.0, resume_at=1.8)
    result = await recorder.stop()
    assert abs(result.duration_s - (loop.time() - started)) < 0.2
    assert result.path.exists() and not recorder.part_path.exists()
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    pcm = decode(result.path)
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    left, right = list(samples[0::2]), list(samples[1::2])
    assert len(left) == round(result.duration_s * RATE)
    assert_tone(left[RATE // 4 : int(0.9 * RATE)], CALLER_HZ, AGENT_HZ)
    assert_tone(right[RATE // 4 : int(0.9 * RATE)], AGENT_HZ, CALLER_HZ)
    assert_tone(left[2 * RATE : int(2.7 * RATE)], CALLER_HZ, AGENT_HZ)
    [paused] = result.paused_intervals
    assert paused.start_s == pytest.approx(1.0, abs=0.05) and paused.end_s == pytest.approx(1.8, abs=0.05)
    # Lossless: the PCI pause is exact digital silence, not near-silence.
    assert set(left[paused.start : paused.end]) == {0} == set(right[paused.start : paused.end])
    assert rms(left[paused.end + 400 : paused.end + 4000]) > 1000


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mp3"):
        CallRecorder(tmp_path / "r.mp3", file_format="mp3")
