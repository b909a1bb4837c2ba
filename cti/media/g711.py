"""G.711 μ-law (PCMU, payload type 0) and A-law (PCMA, payload type 8) codecs (pure).

Owns the conversion between G.711 code bytes and 16-bit signed little-endian linear PCM.
The tables are computed once at import from the ITU-T G.711 segment algorithm (as in the
reference Sun g711.c), so that the hot paths are table look-ups done in C: decoding is
two `bytes.translate` calls (one per output byte), encoding is one `map` over a table
indexed by the raw unsigned sample. This module must never import `audioop` (removed in
Python 3.13) nor do any I/O.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Sequence
from operator import itemgetter

PCMU = 0
PCMA = 8

_BIAS = 0x84
_CLIP = 8159


def _segment(value: int, first_segment_bits: int) -> int:
    # G.711 segment ends are 2**(first_segment_bits + seg) - 1: the segment is how far
    # the value's top bit lies above the first segment (ITU-T G.711 tables 1a and 2a).
    return max(0, value.bit_length() - first_segment_bits)


def _ulaw_from_linear(sample: int) -> int:
    value = sample >> 2  # μ-law works on 14-bit magnitudes
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _CLIP) + (_BIAS >> 2)
    seg = _segment(value, 6)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def _ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    t = (((code & 0x0F) << 3) + _BIAS) << ((code & 0x70) >> 4)
    return _BIAS - t if code & 0x80 else t - _BIAS


def _alaw_from_linear(sample: int) -> int:
    value = sample >> 3  # A-law works on 13-bit magnitudes
    if value >= 0:
        mask = 0xD5
    else:
        # One's complement rather than negation: A-law has no code for zero, and
        # -1 >> 3 must land on the smallest negative code, not on the positive one.
        mask, value = 0x55, -value - 1
    seg = _segment(value, 5)
    if seg >= 8:
        return 0x7F ^ mask
    quant = (value >> 1) if seg < 2 else (value >> seg)
    return ((seg << 4) | (quant & 0x0F)) ^ mask


def _alaw_to_linear(code: int) -> int:
    code ^= 0x55
    t = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        t += 8
    else:
        t = (t + 0x108) << (seg - 1)
    return t if code & 0x80 else -t


def _decode_tables(to_linear: Callable[[int], int]) -> tuple[bytes, bytes]:
    samples = [to_linear(code) & 0xFFFF for code in range(256)]
    return bytes(s & 0xFF for s in samples), bytes(s >> 8 for s in samples)


def _encode_table(from_linear: Callable[[int], int], dropped_bits: int) -> list[int]:
    # Indexed by the sample read as unsigned 16 bits, so the hot path needs no sign
    # fix-up. The codec ignores the low `dropped_bits`, so only 2**(16 - dropped_bits)
    # codes are computed and each is repeated: this keeps the import fast.
    step = 1 << dropped_bits
    coarse = bytes(
        from_linear((u - 0x10000 if u & 0x8000 else u)) for u in range(0, 0x10000, step)
    )
    table = bytearray(0x10000)
    for offset in range(step):
        table[offset::step] = coarse
    # A list, not bytes: itemgetter over a list is the fastest look-up CPython offers.
    return list(table)


_ULAW_LOW, _ULAW_HIGH = _decode_tables(_ulaw_to_linear)
_ALAW_LOW, _ALAW_HIGH = _decode_tables(_alaw_to_linear)
_ULAW_ENCODE = _encode_table(_ulaw_from_linear, 2)
_ALAW_ENCODE = _encode_table(_alaw_from_linear, 3)
_BIG_ENDIAN = sys.byteorder == "big"


def _decode(data: bytes, low: bytes, high: bytes) -> bytes:
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(low)
    out[1::2] = data.translate(high)
    return bytes(out)


def _encode(pcm: bytes, table: list[int]) -> bytes:
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM has an odd length ({len(pcm)} bytes)")
    samples: Sequence[int]
    if _BIG_ENDIAN:
        swapped = array("H", bytes(pcm))
        swapped.byteswap()
        samples = swapped
    else:
        samples = memoryview(pcm).cast("B").cast("H")
    if len(samples) < 2:
        # itemgetter with one key returns a bare item, with none it cannot be built.
        return bytes(table[u] for u in samples)
    # One C-level loop for the whole frame: about twice as fast as map(list.__getitem__).
    return bytes(itemgetter(*samples)(table))


def ulaw_decode(data: bytes) -> bytes:
    """μ-law codes to 16-bit signed little-endian PCM (two bytes per code)."""
    return _decode(bytes(data), _ULAW_LOW, _ULAW_HIGH)


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit signed little-endian PCM to μ-law codes (one byte per sample)."""
    return _encode(pcm, _ULAW_ENCODE)


def alaw_decode(data: bytes) -> bytes:
    """A-law codes to 16-bit signed little-endian PCM (two bytes per code)."""
    return _decode(bytes(data), _ALAW_LOW, _ALAW_HIGH)


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit signed little-endian PCM to A-law codes (one byte per sample)."""
    return _encode(pcm, _ALAW_ENCODE)


_DECODERS: dict[int, Callable[[bytes], bytes]] = {PCMU: ulaw_decode, PCMA: alaw_decode}
_ENCODERS: dict[int, Callable[[bytes], bytes]] = {PCMU: ulaw_encode, PCMA: alaw_encode}


def decoder_for(payload_type: int) -> Callable[[bytes], bytes]:
    """The G.711 decoder of a static payload type (0 PCMU, 8 PCMA)."""
    try:
        return _DECODERS[payload_type]
    except KeyError:
        raise ValueError(f"payload type {payload_type} is not G.711 (0 PCMU or 8 PCMA)") from None


def encoder_for(payload_type: int) -> Callable[[bytes], bytes]:
    """The G.711 encoder of a static payload type (0 PCMU, 8 PCMA)."""
    try:
        return _ENCODERS[payload_type]
    except KeyError:
        raise ValueError(f"payload type {payload_type} is not G.711 (0 PCMU or 8 PCMA)") from None


def silence(payload_type: int, samples: int) -> bytes:
    """`samples` codes of digital silence for the payload type."""
    return encoder_for(payload_type)(bytes(2 * samples))
