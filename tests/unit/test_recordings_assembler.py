"""RTP packets to stereo PCM: placement by timestamp, loss, reordering, PCI silence.

The helpers here (tone packets, Goertzel, RMS) are shared by the recorder tests."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterator

import pytest

from cti.media.g711 import PCMA, PCMU, encoder_for
from cti.media.mix import Side
from cti.media.rtp import RtpPacket
from cti.media.wavsource import FRAME_SAMPLES, RtpPacketizer
from recordings.assembler import StereoAssembler

RATE = 8000
CALLER_HZ = 440.0
AGENT_HZ = 880.0


def tone(freq: float, start: int, count: int, amplitude: int = 8000) -> bytes:
    return struct.pack(
        f"<{count}h", *(round(amplitude * math.sin(2 * math.pi * freq * (start + n) / RATE)) for n in range(count))
    )


def tone_packets(
    freq: float, *, payload_type: int = PCMA, seconds: float, ssrc: int, sequence: int = 1000, timestamp: int = 5000
) -> Iterator[bytes]:
    """Serialized 20 ms G.711 packets of a continuous tone."""
    packetizer = RtpPacketizer(ssrc=ssrc, payload_type=payload_type, sequence=sequence, timestamp=timestamp)
    encode = encoder_for(payload_type)
    for k in range(round(seconds * RATE / FRAME_SAMPLES)):
        yield packetizer.packetize(encode(tone(freq, k * FRAME_SAMPLES, FRAME_SAMPLES))).serialize()


def channels(stereo: bytes) -> tuple[list[int], list[int]]:
    values = struct.unpack(f"<{len(stereo) // 2}h", stereo)
    return list(values[0::2]), list(values[1::2])


def goertzel(samples: list[int], freq: float) -> float:
    """Relative power of `freq` in the samples."""
    coeff = 2 * math.cos(2 * math.pi * freq / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / max(1, len(samples)) ** 2


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(x * x for x in samples) / max(1, len(samples)))


def assert_tone(samples: list[int], freq: float, other: float) -> None:
    assert rms(samples) > 1000, "expected a tone, got near silence"
    assert goertzel(samples, freq) > 20 * goertzel(samples, other)


def feed_call(
    assembler: StereoAssembler,
    seconds: float,
    *,
    loss: float = 0.0,
    reorder: float = 0.0,
    jitter: int = 0,
    seed: int = 7,
    out: bytearray,
) -> int:
    """Both sides' tones, 20 ms apart, with simulated network trouble; drains as it
    goes like the recorder. Returns the end position."""
    rng = random.Random(seed)
    caller = list(tone_packets(CALLER_HZ, seconds=seconds, ssrc=1, timestamp=4_000_000_000))  # wraps
    agent = list(tone_packets(AGENT_HZ, payload_type=PCMA, seconds=seconds, ssrc=2, sequence=65500))
    arrivals: list[tuple[int, Side, bytes]] = []
    for side, packets, delay in ((Side.CALLER, caller, 40), (Side.AGENT, agent, 160)):
        for k, data in enumerate(packets):
            if rng.random() < loss:
                continue
            at = k * FRAME_SAMPLES + delay + rng.randrange(jitter + 1)
            if rng.random() < reorder:
                at += 2 * FRAME_SAMPLES  # overtaken by the next two
            arrivals.append((at, side, data))
    arrivals.sort(key=lambda a: a[0])
    step = 1600
    next_drain = step
    for at, side, data in arrivals:
        while at >= next_drain:
            out += assembler.drain_ready(next_drain)
            next_drain += step
        assembler.packet(side, data, at)
    end = round(seconds * RATE)
    out += assembler.finish(end)
    return end


def test_tones_land_on_their_channels_for_exactly_the_recorded_time() -> None:
    assembler = StereoAssembler()
    out = bytearray()
    end = feed_call(assembler, 3.0, out=out)
    assert len(out) == 4 * end
    left, right = channels(bytes(out))
    middle = slice(RATE // 2, 5 * RATE // 2)
    assert_tone(left[middle], CALLER_HZ, AGENT_HZ)
    assert_tone(right[middle], AGENT_HZ, CALLER_HZ)
    assert assembler.stats.reanchors == 2  # one anchor per side, the timestamp wrap is not a jump
    assert assembler.stats.late_samples == 0


def test_loss_reordering_and_jitter_within_latency_cost_only_the_lost_packets() -> None:
    clean, troubled = bytearray(), bytearray()
    feed_call(StereoAssembler(), 4.0, out=clean)
    assembler = StereoAssembler()
    feed_call(assembler, 4.0, loss=0.05, reorder=0.1, jitter=400, out=troubled)
    assert len(clean) == len(troubled)
    assert assembler.stats.late_samples == 0
    left, right = channels(bytes(troubled))
    assert_tone(left[RATE : 3 * RATE], CALLER_HZ, AGENT_HZ)
    assert_tone(right[RATE : 3 * RATE], AGENT_HZ, CALLER_HZ)
    # Placed by timestamp, not by arrival: apart from the lost packets, the audio is the
    # clean run's, shifted as a whole by the first packet's own delay.
    clean_left, _ = channels(bytes(clean))
    window = slice(RATE, RATE + 800)
    shift = max(range(-400, 401), key=lambda d: sum(a == b for a, b in zip(left[window], clean_left[RATE + d :])))
    same = sum(1 for a, b in zip(left[RATE : 3 * RATE], clean_left[RATE + shift :]) if a == b)
    assert same > 0.9 * 2 * RATE


def test_pci_pause_is_silence_on_both_channels() -> None:
    assembler = StereoAssembler(latency=2400)
    out = bytearray()
    caller = tone_packets(CALLER_HZ, seconds=3, ssrc=1)
    agent = tone_packets(AGENT_HZ, seconds=3, ssrc=2)
    for k, (c, a) in enumerate(zip(caller, agent)):
        at = k * FRAME_SAMPLES
        if at == RATE:
            assert assembler.pause(at)
            assert not assembler.pause(at)  # idempotent
        if at == 2 * RATE:
            assert assembler.resume(at)
        assembler.packet(Side.CALLER, c, at)
        assembler.packet(Side.AGENT, a, at)
        out += assembler.drain_ready(at)
    out += assembler.finish(3 * RATE)
    left, right = channels(bytes(out))
    assert rms(left[RATE : 2 * RATE]) == 0 and rms(right[RATE : 2 * RATE]) == 0
    assert_tone(left[RATE // 4 : RATE - 10], CALLER_HZ, AGENT_HZ)
    assert_tone(right[2 * RATE + 10 : 3 * RATE - 100], AGENT_HZ, CALLER_HZ)
    [interval] = assembler.paused_intervals()
    assert (interval.start, interval.end) == (RATE, 2 * RATE)
    assert interval.as_ms() == [1000, 2000]


def test_a_pause_still_open_at_the_end_is_closed_there_and_silences_the_rest() -> None:
    assembler = StereoAssembler()
    for k, data in enumerate(tone_packets(CALLER_HZ, seconds=2, ssrc=1)):
        if k == 50:
            assembler.pause(k * FRAME_SAMPLES)
        assembler.packet(Side.CALLER, data, k * FRAME_SAMPLES)
    out = assembler.finish(2 * RATE)
    left, _ = channels(out)
    assert rms(left[RATE:]) == 0
    assert [(i.start, i.end) for i in assembler.paused_intervals()] == [(RATE, 2 * RATE)]


def test_silence_where_a_side_sends_nothing_and_nothing_after_the_end() -> None:
    assembler = StereoAssembler()
    packets = list(tone_packets(CALLER_HZ, seconds=1, ssrc=1))
    for k, data in enumerate(packets[:25]):  # half a second, then the caller goes quiet
        assembler.packet(Side.CALLER, data, k * FRAME_SAMPLES)
    out = assembler.finish(RATE)
    assembler.packet(Side.CALLER, packets[30], RATE)  # after the end: ignored
    assert assembler.drain(2 * RATE) == b""
    left, right = channels(out)
    assert len(left) == RATE
    assert rms(left[RATE // 2 :]) == 0 and rms(right) == 0


def test_dtmf_rtcp_and_garbage_are_not_recorded() -> None:
    assembler = StereoAssembler()
    event = RtpPacket(payload_type=101, sequence=1, timestamp=0, ssrc=1, payload=b"\x05\x0a\x00\xa0").serialize()
    rtcp = bytes([0x80, 200, 0, 1]) + bytes(4)
    assembler.packet(Side.CALLER, event, 0)
    assembler.packet(Side.CALLER, rtcp, 0)
    assembler.packet(Side.CALLER, b"\x00junk", 0)
    out = assembler.finish(800)
    assert set(out) == {0}
    assert (assembler.stats.not_audio, assembler.stats.not_rtp, assembler.stats.packets) == (1, 2, 0)


def test_new_ssrc_and_timestamp_jump_reanchor_on_arrival() -> None:
    assembler = StereoAssembler()
    first = list(tone_packets(CALLER_HZ, payload_type=PCMU, seconds=0.5, ssrc=1))
    second = list(tone_packets(CALLER_HZ, payload_type=PCMU, seconds=0.5, ssrc=9, timestamp=123))
    for k, data in enumerate(first):
        assembler.packet(Side.CALLER, data, k * FRAME_SAMPLES)
    for k, data in enumerate(second):  # a re-INVITE gave the phone a new stream at 1 s
        assembler.packet(Side.CALLER, data, RATE + k * FRAME_SAMPLES)
    out = assembler.finish(int(1.5 * RATE))
    left, _ = channels(out)
    assert assembler.stats.reanchors == 2
    assert rms(left[int(0.55 * RATE) : int(0.95 * RATE)]) == 0
    assert_tone(left[RATE + 100 : int(1.5 * RATE) - 100], CALLER_HZ, AGENT_HZ)


def test_packets_later_than_the_latency_are_counted_not_written_over_the_past() -> None:
    assembler = StereoAssembler(latency=800)
    packets = list(tone_packets(CALLER_HZ, seconds=1, ssrc=1))
    for k, data in enumerate(packets):
        if k == 10:
            continue
        assembler.packet(Side.CALLER, data, k * FRAME_SAMPLES)
        assembler.drain_ready(k * FRAME_SAMPLES)
    assembler.packet(Side.CALLER, packets[10], 49 * FRAME_SAMPLES)  # 0.8 s late
    assert assembler.stats.late_samples == 0  # re-anchored, not late: it cannot be placed
    assembler.finish(RATE)
    assert assembler.position == RATE


@pytest.mark.parametrize("bad", [{"latency": -1}, {"max_lead": -1}])
def test_negative_settings_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        StereoAssembler(**bad)
