"""G.711 against an independent port of the ITU-T reference, plus captured audio."""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.media.g711 import (
    PCMA,
    PCMU,
    alaw_decode,
    alaw_encode,
    decoder_for,
    encoder_for,
    silence,
    ulaw_decode,
    ulaw_encode,
)
from cti.media.rtp import parse_rtp
from tests.fixtures.rtp import AUDIO_HEAD, captured, require_captures

ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))


# A deliberately plain transcription of Sun's g711.c (segment tables searched in a
# loop), independent of the module's bit_length arithmetic and look-up tables.
SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def search(value: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if value <= end:
            return i
    return len(table)


def ref_linear2ulaw(pcm: int) -> int:
    pcm >>= 2
    mask = 0xFF
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    pcm = min(pcm, 8159) + 33
    seg = search(pcm, SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def ref_linear2alaw(pcm: int) -> int:
    pcm >>= 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask, pcm = 0x55, -pcm - 1
    seg = search(pcm, SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= ((pcm >> 1) if seg < 2 else (pcm >> seg)) & 0xF
    return aval ^ mask


def samples(pcm: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


def test_ulaw_encode_matches_reference_for_every_sample() -> None:
    assert ulaw_encode(ALL_SAMPLES) == bytes(ref_linear2ulaw(s) for s in range(-32768, 32768))


def test_alaw_encode_matches_reference_for_every_sample() -> None:
    assert alaw_encode(ALL_SAMPLES) == bytes(ref_linear2alaw(s) for s in range(-32768, 32768))


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xFE, 8), (0x7E, -8), (0xEF, 132)],
)
def test_ulaw_known_values(code: int, value: int) -> None:
    assert samples(ulaw_decode(bytes([code]))) == (value,)


@pytest.mark.parametrize(
    ("code", "value"), [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24)]
)
def test_alaw_known_values(code: int, value: int) -> None:
    assert samples(alaw_decode(bytes([code]))) == (value,)


def test_zero_encodes_to_the_positive_zero_codes() -> None:
    assert ulaw_encode(bytes(2)) == b"\xff"
    assert alaw_encode(bytes(2)) == b"\xd5"
    assert silence(PCMU, 3) == b"\xff\xff\xff" and silence(PCMA, 2) == b"\xd5\xd5"


def test_every_ulaw_code_round_trips_but_negative_zero() -> None:
    codes = bytes(range(256))
    # 0x7F is μ-law's "negative zero": it decodes to 0, which encodes as 0xFF.
    expected = codes.replace(b"\x7f", b"\xff")
    assert ulaw_encode(ulaw_decode(codes)) == expected


def test_every_alaw_code_round_trips() -> None:
    codes = bytes(range(256))
    assert alaw_encode(alaw_decode(codes)) == codes


def test_decode_is_monotonic_over_sorted_codes() -> None:
    for decode in (ulaw_decode, alaw_decode):
        values = sorted(samples(decode(bytes(range(256)))))
        assert values[0] < 0 < values[-1]


@given(st.lists(st.integers(-32768, 32767), max_size=400))
def test_decode_encode_within_quantization_error(values: list[int]) -> None:
    pcm = struct.pack(f"<{len(values)}h", *values)
    for encode, decode, clip in ((ulaw_encode, ulaw_decode, 32124), (alaw_encode, alaw_decode, 32256)):
        back = samples(decode(encode(pcm)))
        for original, restored in zip(values, back):
            clipped = max(-clip, min(clip, original))
            # Quantization step is 1/16 of the segment: relative error under 1/16 plus
            # the finest step (16 for μ-law's 14 bits, 16 for A-law's 13 bits).
            assert abs(clipped - restored) <= abs(clipped) / 16 + 16


def test_odd_length_pcm_is_rejected() -> None:
    with pytest.raises(ValueError, match="odd length"):
        ulaw_encode(b"\x00\x00\x00")


@pytest.mark.parametrize("encode", [ulaw_encode, alaw_encode])
def test_short_and_buffer_inputs(encode: object) -> None:
    assert callable(encode)
    assert encode(b"") == b""
    assert len(encode(bytearray(2))) == 1
    assert encode(memoryview(ALL_SAMPLES)[:8]) == encode(ALL_SAMPLES[:8])


def test_codec_lookup_by_payload_type() -> None:
    assert decoder_for(0) is ulaw_decode and encoder_for(0) is ulaw_encode
    assert decoder_for(8) is alaw_decode and encoder_for(8) is alaw_encode
    with pytest.raises(ValueError, match="payload type 18 is not G.711"):
        decoder_for(18)
    with pytest.raises(ValueError, match="payload type 9 is not G.711"):
        encoder_for(9)


def test_captured_pcma_speech_is_not_silence() -> None:
    require_captures()
    packets = [parse_rtp(payload) for payload in captured("g711a.pcap", limit=AUDIO_HEAD)]
    assert {p.payload_type for p in packets} == {PCMA}
    speech = samples(decoder_for(PCMA)(b"".join(p.payload for p in packets[20:])))
    rms = math.sqrt(sum(s * s for s in speech) / len(speech))
    assert rms > 500
    lead_in = samples(alaw_decode(b"".join(p.payload for p in packets[:20])))
    assert max(abs(s) for s in lead_in) <= 8


def _best_of(runs: int, work: object) -> float:
    assert callable(work)
    best = math.inf
    for _ in range(runs):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def test_one_second_encodes_in_under_2_ms() -> None:
    pcm = struct.pack("<8000h", *(int(12000 * math.sin(i / 3)) for i in range(8000)))
    for encode in (ulaw_encode, alaw_encode):
        assert _best_of(20, lambda: encode(pcm)) < 0.002
    coded = alaw_encode(pcm)
    assert _best_of(20, lambda: alaw_decode(coded)) < 0.002
