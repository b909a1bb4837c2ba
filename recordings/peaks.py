"""Waveform peaks of a recording, for the QA player: per channel, the loudest sample of
each of `n` equal stretches of the file, 0..1.

Owns reading a WAV file (stdlib `wave`) a stretch at a time, so that a long recording
never sits in memory whole, and the peak arithmetic (`stretch_peaks`, pure). Blocking:
the web layer runs `wav_peaks` in a worker thread. Must never: load the whole file, or
answer for a file that is not 16-bit PCM WAV (`NotWav` says what it is instead).
"""

from __future__ import annotations

import array
import sys
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MAX_BUCKETS", "NotWav", "Peaks", "stretch_peaks", "wav_peaks"]

MAX_BUCKETS = 4000
FULL_SCALE = 32768
CHANNEL_NAMES = {1: ("mono",), 2: ("caller", "agent")}  # the recorder: caller left, agent right


class NotWav(ValueError):
    """The file is not a WAV the player's waveform can be drawn from."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Peaks:
    sample_rate: int
    duration_s: float
    channels: tuple[str, ...]
    peaks: tuple[tuple[float, ...], ...]  # per channel, n values 0..1

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "duration_s": self.duration_s,
            "channels": list(self.channels),
            "n": len(self.peaks[0]) if self.peaks else 0,
            "peaks": [list(channel) for channel in self.peaks],
        }


def stretch_peaks(frames: bytes, channels: int) -> tuple[float, ...]:
    """The loudest sample per channel of interleaved little-endian 16-bit frames, 0..1."""
    samples = array.array("h")
    samples.frombytes(frames[: len(frames) - len(frames) % (2 * channels)])
    if sys.byteorder == "big":
        samples.byteswap()
    out: list[float] = []
    for channel in range(channels):
        side = samples[channel::channels]
        if not side:
            out.append(0.0)
            continue
        out.append(round(max(max(side), -min(side)) / FULL_SCALE, 4))
    return tuple(out)


def wav_peaks(path: Path, n: int) -> Peaks:
    """`n` peaks per channel (fewer for a file shorter than `n` frames). Blocking."""
    if not 1 <= n <= MAX_BUCKETS:
        raise ValueError(f"n must be from 1 to {MAX_BUCKETS}")
    try:
        with wave.open(str(path), "rb") as reader:
            return _read(reader, n)
    except (wave.Error, EOFError) as err:
        raise NotWav(f"{path.suffix or 'the file'} is not a WAV file ({err})") from None


def _read(reader: wave.Wave_read, n: int) -> Peaks:
    channels, width, rate, total = reader.getnchannels(), reader.getsampwidth(), reader.getframerate(), reader.getnframes()
    if width != 2 or channels not in CHANNEL_NAMES:
        raise NotWav(f"the waveform is drawn from 16-bit mono or stereo PCM; this file has {channels} channel(s) of {8 * width} bits")
    buckets = min(n, total)
    columns: list[list[float]] = [[] for _ in range(channels)]
    # Stretch i is frames [i * total // buckets, (i + 1) * total // buckets): exactly
    # `buckets` stretches, their lengths differing by one frame at most.
    for i in range(buckets):
        frames = reader.readframes((i + 1) * total // buckets - i * total // buckets)
        if not frames:
            break
        for channel, peak in enumerate(stretch_peaks(frames, channels)):
            columns[channel].append(peak)
    return Peaks(
        sample_rate=rate,
        duration_s=total / rate if rate else 0.0,
        channels=CHANNEL_NAMES[channels],
        peaks=tuple(tuple(column) for column in columns),
    )
