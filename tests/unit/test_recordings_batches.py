"""The assembler's bulk path: a batch fed at once must give exactly the recording (and
the statistics) that the same packets give one at a time, whatever the network did.

The recorder hands the assembler each side's packets of an interval in one call; the
usual batch (one stream, consecutive timestamps, on time) is placed in bulk and
anything else goes packet by packet. These tests drive both ways with the same
arrivals, drains and pauses and compare the bytes."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.media.g711 import PCMA, PCMU, alaw_encode, ulaw_encode
from recordings.assembler import StereoAssembler
from recordings.tracks import Track

RATE = 8000
ORIGIN = 5321.125  # the monotonic clock's reading when the recording started
SIDES = ("caller", "agent")


@dataclass
class Stream:
    """One side's sender, with the troubles it can have."""

    rng: random.Random
    ssrc: int
    timestamp: int
    payload_type: int = PCMA
    sequence: int = 0
    frame: int = 160
    offset_s: float = 0.03  # network delay of the stream
    drift: float = 0.0  # seconds gained per second of audio
    out: list[tuple[float, bytes]] = field(default_factory=list)

    def audio(self, k: int) -> bytes:
        tone = struct.pack(f"<{self.frame}h", *((3000 + 97 * k + 13 * n) % 20000 - 10000 for n in range(self.frame)))
        return (alaw_encode if self.payload_type == PCMA else ulaw_encode)(tone)

    def packet(self, *, marker: bool = False, payload_type: int | None = None, payload: bytes | None = None,
               first: int = 0x80, extra: bytes = b"") -> bytes:
        second = (payload_type if payload_type is not None else self.payload_type) | (0x80 if marker else 0)
        header = struct.pack("!BBHII", first, second, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)
        body = payload if payload is not None else self.audio(self.sequence)
        return header + extra + body

    def run(self, seconds: float, trouble: float) -> list[tuple[float, bytes]]:
        rng = self.rng
        t = 0.0
        while t < seconds:
            arrival = t + self.offset_s + self.drift * t + rng.uniform(0, 0.01)
            roll = rng.random() if rng.random() < trouble else 1.0
            data = self.packet(marker=roll < 0.02)
            if roll < 0.06:
                pass  # lost
            elif roll < 0.10:
                self.out.append((arrival + 0.045, data))  # overtaken by the next two
            elif roll < 0.13:
                self.out += [(arrival, data), (arrival + 0.001, data)]  # duplicated
            elif roll < 0.15:
                self.out.append((arrival + rng.choice([0.5, 2.0]), data))  # very late
            elif roll < 0.17:
                self.ssrc = rng.randrange(1 << 32)  # a re-INVITE: new stream
                self.timestamp = rng.randrange(1 << 32)
                self.out.append((arrival, self.packet()))
            elif roll < 0.18:
                self.ssrc = rng.randrange(1 << 32)  # a new source that keeps the timestamps
                self.out.append((arrival, self.packet()))
            elif roll < 0.19:
                # Timestamp jumps: far, and just beyond what the clock's window allows.
                self.timestamp += rng.choice([-100_000, 48_000, 1 << 31, 8_500, -2_600])
                self.out.append((arrival, self.packet()))
            elif roll < 0.21:
                self.out.append((arrival, self.packet(payload_type=101, payload=b"\x05\x0a\x00\xa0")))  # DTMF
            elif roll < 0.22:
                self.out.append((arrival, bytes([0x81, 201, 0, 7]) + bytes(28)))  # RTCP
            elif roll < 0.23:
                self.out.append((arrival, b"\x80\x08junk"))  # truncated
            elif roll < 0.24:
                self.out.append((arrival, self.packet(first=0x81, extra=b"\x00\x00\x00\x09")))  # one CSRC
            elif roll < 0.25:
                self.out.append((arrival, self.packet(first=0xA0, extra=b"")[:-1] + b"\x02"))  # padding
            elif roll < 0.27:
                self.payload_type = PCMU if self.payload_type == PCMA else PCMA  # codec change
                self.out.append((arrival, self.packet()))
            elif roll < 0.29:
                self.frame = 80 if self.frame == 160 else 160  # ptime change
                self.out.append((arrival, self.packet()))
            elif roll < 0.31:
                self.drift = rng.choice([0.0, 0.2, -0.2, 0.5, -0.5])  # a clock that runs away
                self.out.append((arrival, data))
            else:
                self.out.append((arrival, data))
            self.sequence += 1
            self.timestamp = (self.timestamp + self.frame) & 0xFFFFFFFF
            t += self.frame / RATE
        return sorted(self.out, key=lambda a: a[0])


def scenario(seed: int, seconds: float, trouble: float) -> dict[str, list[tuple[float, bytes]]]:
    rng = random.Random(seed)
    return {
        side: Stream(rng, ssrc=rng.randrange(1 << 32), timestamp=rng.choice([rng.randrange(1 << 32), 2**32 - 3200]),
                     payload_type=rng.choice([PCMA, PCMU]), offset_s=rng.uniform(0.0, 0.2)).run(seconds, trouble)
        for side in SIDES
    }


def record(arrivals: dict[str, list[tuple[float, bytes]]], *, interval_s: float, batched: bool,
           pauses: tuple[float, ...] = ()) -> tuple[bytes, object, tuple[object, ...]]:
    """What the recorder does: every interval, feed each side's new packets and drain."""
    assembler = StereoAssembler(latency=2400)
    out = bytearray()
    end_s = max(t for packets in arrivals.values() for t, _ in packets) + 0.1
    toggles = sorted(pauses)
    paused = False
    tick = 0.0
    while tick < end_s:
        tick += interval_s
        while toggles and toggles[0] <= tick:
            at = round(toggles.pop(0) * RATE)
            _ = assembler.resume(at) if paused else assembler.pause(at)
            paused = not paused
        for side in SIDES:
            batch = [(t, data) for t, data in arrivals[side] if tick - interval_s <= t < tick]
            if not batch:
                continue
            if batched:
                assembler.feed(side, b"".join(d for _, d in batch), [len(d) for _, d in batch],
                               [ORIGIN + t for t, _ in batch], origin=ORIGIN)
            else:
                for t, data in batch:
                    assembler.feed(side, data, [len(data)], [ORIGIN + t], origin=ORIGIN)
        out += assembler.drain_ready(round(tick * RATE))
    out += assembler.finish(round(end_s * RATE))
    return bytes(out), assembler.stats, assembler.paused_intervals()


@pytest.mark.parametrize("interval_s", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("trouble", [0.0, 0.05, 0.5])
def test_batches_record_exactly_what_single_packets_record(interval_s: float, trouble: float) -> None:
    for seed in range(4):
        arrivals = scenario(seed, 6.0, trouble)
        pauses = (1.3, 2.1) if seed % 2 else ()
        one_by_one = record(arrivals, interval_s=interval_s, batched=False, pauses=pauses)
        assert record(arrivals, interval_s=interval_s, batched=True, pauses=pauses) == one_by_one


@pytest.mark.parametrize("drift", [0.5, -0.5, 0.05, -0.05])
@pytest.mark.parametrize("interval_s", [0.2, 0.5])
def test_a_sender_clock_that_runs_away_reanchors_the_same_way(drift: float, interval_s: float) -> None:
    rng = random.Random(5)
    arrivals = {
        "caller": Stream(rng, ssrc=1, timestamp=7, drift=drift).run(5.0, 0.0),
        "agent": Stream(rng, ssrc=2, timestamp=9, offset_s=0.1).run(5.0, 0.0),
    }
    one_by_one = record(arrivals, interval_s=interval_s, batched=False)
    assert record(arrivals, interval_s=interval_s, batched=True) == one_by_one
    stats = one_by_one[1]
    assert stats.reanchors > 2 or abs(drift) < 0.1  # type: ignore[attr-defined]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), trouble=st.floats(0.0, 1.0), interval_s=st.sampled_from([0.1, 0.3, 0.5, 1.0]))
def test_batches_match_single_packets_in_any_weather(seed: int, trouble: float, interval_s: float) -> None:
    arrivals = scenario(seed, 3.0, trouble)
    assert record(arrivals, interval_s=interval_s, batched=True) == record(
        arrivals, interval_s=interval_s, batched=False
    )


def test_a_clean_batch_takes_the_bulk_path(monkeypatch: pytest.MonkeyPatch) -> None:
    arrivals = scenario(1, 3.0, 0.0)
    assembler = StereoAssembler()
    one_at_a_time: list[int] = []
    original = Track._place_each

    def counting(track: Track, data: bytes, sizes: list[int], *args: object) -> None:
        one_at_a_time.append(len(sizes))
        original(track, data, sizes, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Track, "_place_each", counting)
    for start in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0):
        for side in SIDES:
            batch = [(t, d) for t, d in arrivals[side] if start <= t < start + 0.5]
            assembler.feed(side, b"".join(d for _, d in batch), [len(d) for _, d in batch],
                           [ORIGIN + t for t, _ in batch], origin=ORIGIN)
        assembler.drain_ready(round((start + 0.5) * RATE))
    # Only each stream's first batch, which anchors it, went one packet at a time.
    assert len(one_at_a_time) == 2
    assert assembler.stats.packets == sum(len(a) for a in arrivals.values())
