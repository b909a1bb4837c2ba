"""recordings.peaks: the waveform of a WAV file, a stretch at a time."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest

from recordings.peaks import NotWav, stretch_peaks, wav_peaks


def write_wav(path: Path, samples: list[tuple[int, int]], *, channels: int = 2, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(8000)
        if width == 2:
            wav.writeframes(b"".join(struct.pack("<" + "h" * channels, *frame[:channels]) for frame in samples))
        else:
            wav.writeframes(bytes(len(samples) * channels))
    return path


def test_stretch_peaks_takes_the_loudest_sample_of_each_channel() -> None:
    frames = struct.pack("<6h", 100, -3000, -16384, 5, 200, 0)
    assert stretch_peaks(frames, 2) == (0.5, round(3000 / 32768, 4))
    assert stretch_peaks(struct.pack("<2h", -32768, 32767), 2) == (1.0, round(32767 / 32768, 4))
    assert stretch_peaks(frames[:-1], 2) == (0.5, round(3000 / 32768, 4))  # a torn last frame is left out
    assert stretch_peaks(b"", 2) == (0.0, 0.0)


def test_a_file_splits_into_exactly_n_stretches(tmp_path: Path) -> None:
    # 1001 frames: loud on the left in the first tenth, on the right in the last tenth.
    samples = [(16384 if i < 100 else 0, 8192 if i >= 901 else 0) for i in range(1001)]
    peaks = wav_peaks(write_wav(tmp_path / "call.wav", samples), 10)
    assert peaks.channels == ("caller", "agent") and peaks.sample_rate == 8000
    assert peaks.duration_s == pytest.approx(1001 / 8000)
    left, right = peaks.peaks
    assert len(left) == len(right) == 10
    assert left == (0.5,) + (0.0,) * 9
    assert right == (0.0,) * 9 + (0.25,)
    assert peaks.to_dict()["n"] == 10


def test_a_short_file_gives_a_peak_per_frame_and_an_empty_one_none(tmp_path: Path) -> None:
    short = wav_peaks(write_wav(tmp_path / "short.wav", [(100, 200), (300, 400), (0, 0)]), 800)
    assert [len(channel) for channel in short.peaks] == [3, 3]
    empty = wav_peaks(write_wav(tmp_path / "empty.wav", []), 800)
    assert empty.peaks == ((), ()) and empty.to_dict()["n"] == 0


def test_mono_is_one_channel(tmp_path: Path) -> None:
    peaks = wav_peaks(write_wav(tmp_path / "mono.wav", [(8192, 0)] * 4, channels=1), 2)
    assert peaks.channels == ("mono",) and peaks.peaks == ((0.25, 0.25),)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"fLaC\x00\x00\x00\x22" + bytes(64), "not a WAV"),
        (b"RIFF", "not a WAV"),  # truncated
        (b"", "not a WAV"),
    ],
)
def test_what_is_not_a_wav_says_so(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "call.flac"
    path.write_bytes(content)
    with pytest.raises(NotWav, match=message):
        wav_peaks(path, 10)


def test_8_bit_pcm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotWav, match="16-bit"):
        wav_peaks(write_wav(tmp_path / "eight.wav", [(0, 0)] * 10, width=1), 10)


def test_n_is_bounded() -> None:
    with pytest.raises(ValueError):
        wav_peaks(Path("unused.wav"), 0)
