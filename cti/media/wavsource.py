"""Prompts into a leg: WAV files as 20 ms G.711 frames, and frames as RTP packets (pure).

Owns the conversion of a WAV file to 8 kHz mono 16-bit PCM (stereo and other channel
counts averaged, other rates linearly interpolated, 8/24/32-bit samples cut to 16) and
its encoding into 160-sample G.711 frames, plus the numbering of outgoing packets.
`WavSource` reads its file once, synchronously, when built: the asyncio adapter builds
it off the event loop. Neither class may touch a socket, a clock or asyncio; the pacing
of frames every 20 ms belongs to the adapter.
"""

from __future__ import annotations

import os
import sys
import wave
from array import array
from collections.abc import Iterator
from itertools import cycle

from cti.media.g711 import encoder_for
from cti.media.rtp import RtpPacket

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz, the usual G.711 packetization (RFC 3551 §4.5)


def _to_int16(frames: bytes, width: int) -> array[int]:
    if width == 1:
        # 8-bit WAV is unsigned: flip the sign bit and use it as the high byte.
        high = frames.translate(bytes((b ^ 0x80) for b in range(256)))
        low = bytes(len(frames))
    elif width in (2, 3, 4):
        low, high = frames[width - 2 :: width], frames[width - 1 :: width]
    else:
        raise ValueError(f"WAV sample width of {width} bytes is not supported")
    pcm = bytearray(2 * len(low))
    pcm[0::2], pcm[1::2] = low, high
    samples = array("h", bytes(pcm))
    if sys.byteorder == "big":
        samples.byteswap()  # WAV data is little-endian
    return samples


def _to_mono(samples: array[int], channels: int) -> array[int]:
    if channels == 1:
        return samples
    lanes = [samples[c::channels] for c in range(channels)]
    return array("h", (sum(frame) // channels for frame in zip(*lanes)))


def _resample(samples: array[int], rate: int) -> array[int]:
    # Linear interpolation without a low-pass filter: downsampling music aliases a
    # little, which is acceptable for hold music; record prompts at 8 kHz for quality.
    if rate == SAMPLE_RATE or not samples:
        return samples
    last = len(samples) - 1
    out = array("h")
    for i in range(len(samples) * SAMPLE_RATE // rate):
        j, frac = divmod(i * rate, SAMPLE_RATE)
        a = samples[j]
        b = samples[min(j + 1, last)]
        out.append(a + (b - a) * frac // SAMPLE_RATE)
    return out


def read_wav_pcm(path: str | os.PathLike[str]) -> bytes:
    """The file's audio as 8 kHz mono 16-bit signed little-endian PCM."""
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{os.fspath(path)} is not a PCM WAV file: {exc}") from exc
    samples = _resample(_to_mono(_to_int16(frames, width), channels), rate)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


class WavSource:
    """A WAV file as consecutive 20 ms G.711 payloads for one payload type (0 or 8)."""

    def __init__(self, path: str | os.PathLike[str], payload_type: int, *, loop: bool = False) -> None:
        encode = encoder_for(payload_type)
        pcm = read_wav_pcm(path)
        # Pad the last frame with silence so that every packet is a whole 20 ms.
        pcm += bytes((-(len(pcm) // 2) % FRAME_SAMPLES) * 2)
        self.payload_type = payload_type
        self.loop = loop
        self._encoded = encode(pcm)

    @property
    def frame_count(self) -> int:
        return len(self._encoded) // FRAME_SAMPLES

    @property
    def duration_ms(self) -> int:
        return self.frame_count * FRAME_SAMPLES * 1000 // SAMPLE_RATE

    def frames(self) -> Iterator[bytes]:
        """The payloads in order; endless when looping (unless the file is empty)."""
        data = self._encoded
        once = [data[i : i + FRAME_SAMPLES] for i in range(0, len(data), FRAME_SAMPLES)]
        return cycle(once) if self.loop and once else iter(once)

    def __iter__(self) -> Iterator[bytes]:
        return self.frames()


class RtpPacketizer:
    """Numbers outgoing packets of one stream: sequence +1 per packet, timestamp +samples.

    The first sequence number and timestamp are passed in (RFC 3550 wants them random;
    the adapter draws them) so that tests are deterministic.
    """

    def __init__(self, *, ssrc: int, payload_type: int, sequence: int, timestamp: int) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sequence = sequence % (1 << 16)
        self.timestamp = timestamp % (1 << 32)
        self._talkspurt_start = True

    def packetize(self, payload: bytes, *, samples: int = FRAME_SAMPLES) -> RtpPacket:
        """The next packet; the marker is set on the first packet of a talkspurt."""
        packet = RtpPacket(
            payload_type=self.payload_type,
            sequence=self.sequence,
            timestamp=self.timestamp,
            ssrc=self.ssrc,
            marker=self._talkspurt_start,
            payload=bytes(payload),
        )
        self._talkspurt_start = False
        self.sequence = (self.sequence + 1) % (1 << 16)
        self.timestamp = (self.timestamp + samples) % (1 << 32)
        return packet

    def pause(self, samples: int) -> None:
        """Nothing is sent for `samples`: the clock runs on, the sequence does not, and the
        next packet starts a talkspurt (RFC 3551 §4.1)."""
        self.timestamp = (self.timestamp + samples) % (1 << 32)
        self._talkspurt_start = True
