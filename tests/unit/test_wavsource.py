"""WAV prompts to 20 ms G.711 frames and RTP packets; the shipped hold music."""

from __future__ import annotations

import math
import struct
import wave
from itertools import islice
from pathlib import Path

import pytest

from cti.media.g711 import PCMA, PCMU, alaw_decode, ulaw_decode
from cti.media.rtp import parse_rtp
from cti.media.sounds import HOLD_WAV
from cti.media.sounds.synth import hold_wav_frames
from cti.media.wavsource import FRAME_SAMPLES, RtpPacketizer, WavSource, read_wav_pcm


def sine(rate: int, seconds: float, freq: float = 440.0, amplitude: int = 10000) -> list[int]:
    return [round(amplitude * math.sin(2 * math.pi * freq * n / rate)) for n in range(int(rate * seconds))]


def write_wav(path: Path, samples: list[int], *, rate: int = 8000, channels: int = 1, width: int = 2) -> Path:
    if width == 2:
        frames = struct.pack(f"<{len(samples)}h", *samples)
    elif width == 1:
        frames = bytes((s >> 8) + 128 for s in samples)
    else:
        frames = b"".join(struct.pack("<i", s << 16)[4 - width :] for s in samples)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return path


def rms(samples: tuple[int, ...] | list[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def pcm_samples(pcm: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


def dominant_crossings(samples: tuple[int, ...], rate: int = 8000) -> float:
    """Frequency estimated from zero crossings."""
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if a < 0 <= b)
    return crossings * rate / len(samples)


def test_mono_8k_is_read_as_is(tmp_path: Path) -> None:
    tone = sine(8000, 0.5)
    assert pcm_samples(read_wav_pcm(write_wav(tmp_path / "a.wav", tone))) == tuple(tone)


def test_frames_are_160_byte_g711(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", sine(8000, 1.0))
    source = WavSource(path, PCMU)
    frames = list(source)
    assert len(frames) == 50 == source.frame_count and source.duration_ms == 1000
    assert all(len(f) == FRAME_SAMPLES for f in frames)
    decoded = pcm_samples(ulaw_decode(b"".join(frames)))
    assert 6500 < rms(decoded) < 7500  # 10000 / sqrt(2)
    assert 430 < dominant_crossings(decoded) < 450


def test_last_frame_is_padded_with_silence(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", [1000] * 200)
    frames = list(WavSource(path, PCMA))
    assert len(frames) == 2
    assert frames[1][40:] == b"\xd5" * 120


def test_looping_repeats_forever(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", sine(8000, 0.1))  # 5 frames
    source = WavSource(path, PCMA, loop=True)
    frames = list(islice(source.frames(), 12))
    assert frames[5:10] == frames[:5] and frames[10] == frames[0]


def test_empty_file_yields_nothing_even_when_looping(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", [])
    assert list(WavSource(path, PCMU, loop=True)) == []


def test_stereo_is_averaged(tmp_path: Path) -> None:
    interleaved = [v for pair in zip([1000] * 160, [3000] * 160) for v in pair]
    path = write_wav(tmp_path / "s.wav", interleaved, channels=2)
    assert set(pcm_samples(read_wav_pcm(path))) == {2000}


@pytest.mark.parametrize("rate", [16000, 44100, 11025, 6000])
def test_other_rates_are_resampled_to_8k(tmp_path: Path, rate: int) -> None:
    path = write_wav(tmp_path / "r.wav", sine(rate, 0.5), rate=rate)
    samples = pcm_samples(read_wav_pcm(path))
    assert abs(len(samples) - 4000) <= 1
    assert 430 < dominant_crossings(samples) < 450
    assert 6500 < rms(samples) < 7500


@pytest.mark.parametrize("width", [1, 3, 4])
def test_other_sample_widths_are_cut_to_16_bits(tmp_path: Path, width: int) -> None:
    tone = sine(8000, 0.25)
    samples = pcm_samples(read_wav_pcm(write_wav(tmp_path / "w.wav", tone, width=width)))
    tolerance = 256 if width == 1 else 0
    assert all(abs(a - b) <= tolerance for a, b in zip(samples, tone))


def test_not_a_wav_file(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"RIFF....nonsense")
    with pytest.raises(ValueError, match="is not a PCM WAV file"):
        WavSource(path, PCMU)


def test_unknown_payload_type(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="payload type 18 is not G.711"):
        WavSource(write_wav(tmp_path / "a.wav", [0] * 160), 18)


def test_packetizer_numbers_packets() -> None:
    packetizer = RtpPacketizer(ssrc=0x1234, payload_type=PCMU, sequence=65534, timestamp=0xFFFF_FF60)
    first, second, third = (packetizer.packetize(b"\xff" * 160) for _ in range(3))
    assert [(p.sequence, p.timestamp, p.marker) for p in (first, second, third)] == [
        (65534, 0xFFFF_FF60, True), (65535, 0, False), (0, 160, False),
    ]
    assert parse_rtp(first.serialize()) == first


def test_marker_after_silence() -> None:
    packetizer = RtpPacketizer(ssrc=1, payload_type=PCMA, sequence=10, timestamp=1000)
    packetizer.packetize(b"\xd5" * 160)
    packetizer.pause(800)
    packet = packetizer.packetize(b"\xd5" * 160)
    assert (packet.sequence, packet.timestamp, packet.marker) == (11, 1000 + 160 + 800, True)
    assert packetizer.packetize(b"\xd5" * 160).marker is False


def test_packetizer_feeds_from_a_source(tmp_path: Path) -> None:
    source = WavSource(write_wav(tmp_path / "a.wav", sine(8000, 0.2)), PCMA)
    packetizer = RtpPacketizer(ssrc=7, payload_type=PCMA, sequence=0, timestamp=0)
    packets = [packetizer.packetize(frame) for frame in source]
    assert [p.timestamp for p in packets] == [160 * i for i in range(10)]
    assert [p.payload for p in packets] == list(source)
    assert rms(pcm_samples(alaw_decode(b"".join(p.payload for p in packets)))) > 6000


def test_shipped_hold_music_is_small_8k_mono_and_regenerable() -> None:
    assert HOLD_WAV.stat().st_size < 200_000
    with wave.open(str(HOLD_WAV), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        shipped = pcm_samples(wav.readframes(wav.getnframes()))
    regenerated = pcm_samples(hold_wav_frames())
    assert len(shipped) == len(regenerated)
    # libm may round a last bit differently elsewhere: allow one step.
    assert all(abs(a - b) <= 1 for a, b in zip(shipped, regenerated))
    source = WavSource(HOLD_WAV, PCMU, loop=True)
    assert 2000 <= source.duration_ms <= 10_000
    assert rms(pcm_samples(ulaw_decode(b"".join(islice(source, source.frame_count))))) > 500
