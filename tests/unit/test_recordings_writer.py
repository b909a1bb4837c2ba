"""The streaming stereo WAV writer: sizes patched as it goes, digest, crash leftovers."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import wave
from pathlib import Path

import pytest

from recordings.writer import (
    HEADER_BYTES,
    StereoWavWriter,
    WavWriterError,
    file_sha256,
    repair_header,
    wav_header,
)


def frames(count: int, value: int = 0) -> bytes:
    return struct.pack(f"<{2 * count}h", *([value, -value] * count))


def read(path: Path) -> tuple[tuple[int, int, int, int], bytes]:
    with wave.open(str(path), "rb") as wav:
        params = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes())
        return params, wav.readframes(wav.getnframes())


def test_header_is_the_canonical_44_bytes() -> None:
    header = wav_header(400)
    assert len(header) == HEADER_BYTES
    assert header[:4] == b"RIFF" and struct.unpack_from("<I", header, 4)[0] == 436
    assert header[8:16] == b"WAVEfmt " and header[36:40] == b"data"
    assert struct.unpack_from("<I", header, 40)[0] == 400


def test_the_file_is_a_valid_wav_after_every_append(tmp_path: Path) -> None:
    path = tmp_path / "r.wav"
    writer = StereoWavWriter(path)
    written = b""
    for k in range(1, 6):
        chunk = frames(800 * k, value=k)
        writer.append(chunk)
        written += chunk
        params, data = read(path)  # another reader, while the writer is still open
        assert params == (2, 2, 8000, len(written) // 4)
        assert data == written
        assert os.path.getsize(path) == HEADER_BYTES + len(written)
    closed = writer.close()
    assert closed.frames == len(written) // 4
    assert closed.duration_s == pytest.approx(len(written) / 4 / 8000)
    assert closed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    assert closed.data_sha256 == hashlib.sha256(written).hexdigest()
    assert closed.size_bytes == os.path.getsize(path)


def test_closed_files_are_read_only_and_close_is_idempotent(tmp_path: Path) -> None:
    writer = StereoWavWriter(tmp_path / "r.wav")
    writer.append_silence(20000)
    first = writer.close()
    assert writer.close() is first
    assert stat.S_IMODE(os.stat(tmp_path / "r.wav").st_mode) & 0o222 == 0
    with pytest.raises(WavWriterError):
        writer.append(frames(1))
    params, data = read(tmp_path / "r.wav")
    assert params[3] == 20000 and set(data) == {0}


def test_an_empty_recording_is_a_valid_empty_wav(tmp_path: Path) -> None:
    writer = StereoWavWriter(tmp_path / "r.wav")
    writer.append(b"")
    assert writer.close().frames == 0
    assert read(tmp_path / "r.wav") == ((2, 2, 8000, 0), b"")


def test_partial_frames_and_existing_files_are_refused(tmp_path: Path) -> None:
    writer = StereoWavWriter(tmp_path / "r.wav")
    with pytest.raises(WavWriterError, match="whole number"):
        writer.append(b"\x00\x01\x02")
    writer.close()
    with pytest.raises(FileExistsError):
        StereoWavWriter(tmp_path / "r.wav")


def test_a_crash_leaves_a_readable_file_up_to_the_last_append(tmp_path: Path) -> None:
    path = tmp_path / "r.wav.part"
    writer = StereoWavWriter(path)
    writer.append(frames(8000, 3))
    writer.append(frames(4000, 5))
    # The process dies here: nothing closes the writer. A torn append lands after it.
    with open(path, "ab") as f:
        f.write(frames(100, 9)[:250])
    params, data = read(path)
    assert params[3] == 12000  # the header still describes the complete appends
    assert data == frames(8000, 3) + frames(4000, 5)
    assert repair_header(path) == 12000 + 62  # the torn tail's whole frames are kept
    params, _ = read(path)
    assert params[3] == 12062
    assert os.path.getsize(path) == HEADER_BYTES + 4 * 12062


def test_a_file_changed_behind_the_writers_back_fails_the_close(tmp_path: Path) -> None:
    path = tmp_path / "r.wav"
    writer = StereoWavWriter(path)
    writer.append(frames(1000, 7))
    with open(path, "r+b") as f:
        f.seek(HEADER_BYTES + 10)
        f.write(b"\xff")
    with pytest.raises(WavWriterError, match="changed on disk"):
        writer.close()


def test_durable_mode_writes_the_same_bytes(tmp_path: Path) -> None:
    a, b = StereoWavWriter(tmp_path / "a.wav"), StereoWavWriter(tmp_path / "b.wav", durable=True)
    for writer in (a, b):
        writer.append(frames(500, 1))
        writer.append(frames(500, 2))
    assert a.close().sha256 == b.close().sha256


def test_repair_refuses_a_file_shorter_than_a_header(tmp_path: Path) -> None:
    (tmp_path / "x.wav.part").write_bytes(b"RIFF")
    with pytest.raises(WavWriterError):
        repair_header(tmp_path / "x.wav.part")
