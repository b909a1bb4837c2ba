"""Synthesis of the shipped sounds (8 kHz mono 16-bit WAV); run as a script to rewrite them.

A soft chime for music on hold: a rising major arpeggio of bell-like notes (a
fundamental and a quieter octave, each with an exponential decay), then a rest, so that
looping it sounds like a calm repeating pattern rather than a continuous tone. Pure
arithmetic and the stdlib `wave` module; the only I/O is `write_hold_wav`.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

from cti.media.sounds import HOLD_WAV

RATE = 8000
PEAK = 9000  # about -11 dBFS: audible without clipping the G.711 encoder
# C major arpeggio up and back (C5 E5 G5 C6 G5 E5), Hz, then a rest.
NOTES = (523.25, 659.25, 783.99, 1046.50, 783.99, 659.25)
NOTE_SECONDS = 0.45
REST_SECONDS = 1.3


def hold_samples() -> list[int]:
    samples: list[int] = []
    note_len = int(NOTE_SECONDS * RATE)
    tail = int(1.2 * RATE)  # each note rings on under the next ones
    total = note_len * len(NOTES) + int(REST_SECONDS * RATE)
    mix = [0.0] * total
    for index, freq in enumerate(NOTES):
        start = index * note_len
        for n in range(min(tail, total - start)):
            t = n / RATE
            attack = min(1.0, n / 80)  # 10 ms: no click at the onset
            envelope = attack * math.exp(-4.0 * t)
            tone = math.sin(2 * math.pi * freq * t) + 0.25 * math.sin(4 * math.pi * freq * t)
            mix[start + n] += envelope * tone
    fade = int(0.05 * RATE)  # the loop point meets silence on both sides
    scale = PEAK / max(abs(v) for v in mix)
    for n, value in enumerate(mix):
        gain = min(1.0, (total - 1 - n) / fade)
        samples.append(round(value * scale * gain))
    return samples


def hold_wav_frames() -> bytes:
    samples = hold_samples()
    return struct.pack(f"<{len(samples)}h", *samples)


def write_hold_wav(path: Path = HOLD_WAV) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(hold_wav_frames())


if __name__ == "__main__":
    write_hold_wav()
