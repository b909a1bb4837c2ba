"""The jitter buffer: order restored, gaps waited for up to a depth, then reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.media.jitter import JitterBuffer, JitterOutput, PacketsLost
from cti.media.rtp import RtpPacket, parse_rtp
from tests.fixtures.rtp import AUDIO_HEAD, captured, require_captures



def pkt(seq: int, ssrc: int = 1) -> RtpPacket:
    return RtpPacket(payload_type=0, sequence=seq % 65536, timestamp=(160 * seq) % (1 << 32), ssrc=ssrc)


def push_all(buffer: JitterBuffer, seqs: list[int], ssrc: int = 1) -> list[JitterOutput]:
    return [out for i, s in enumerate(seqs) for out in buffer.push(pkt(s, ssrc), float(i))]


def shape(outputs: list[JitterOutput]) -> list[int | tuple[int, int]]:
    return [o.sequence if isinstance(o, RtpPacket) else (o.first_sequence, o.count) for o in outputs]


def test_in_order_packets_pass_straight_through() -> None:
    buffer = JitterBuffer(depth=3)
    assert shape(push_all(buffer, [5, 6, 7])) == [5, 6, 7]
    assert buffer.held == 0 and buffer.released == 3


def test_reordered_packet_fills_its_gap() -> None:
    buffer = JitterBuffer(depth=3)
    assert shape(push_all(buffer, [0, 2, 3])) == [0]
    assert buffer.held == 2
    assert shape(buffer.push(pkt(1), 3.0)) == [1, 2, 3]
    assert buffer.lost == 0


def test_gap_is_given_up_after_depth_packets() -> None:
    buffer = JitterBuffer(depth=2)
    out = push_all(buffer, [0, 3, 4, 5])
    assert shape(out) == [0, (1, 2), 3, 4, 5]
    assert out[1] == PacketsLost(first_sequence=1, count=2)
    assert buffer.lost == 2
    assert shape(buffer.push(pkt(1), 9.0)) == []  # too late now
    assert buffer.late == 1


def test_depth_zero_never_waits() -> None:
    buffer = JitterBuffer(depth=0)
    assert shape(push_all(buffer, [0, 2, 1, 3])) == [0, (1, 1), 2, 3]


def test_duplicates_are_dropped() -> None:
    buffer = JitterBuffer(depth=3)
    assert shape(push_all(buffer, [0, 2, 2, 1, 1])) == [0, 1, 2]
    assert (buffer.duplicates, buffer.late) == (1, 1)


def test_wrap_around() -> None:
    buffer = JitterBuffer(depth=2)
    assert shape(push_all(buffer, [65534, 0, 65535, 1])) == [65534, 65535, 0, 1]


def test_tick_gives_up_on_a_gap_after_max_wait() -> None:
    buffer = JitterBuffer(depth=10, max_wait=60.0)
    buffer.push(pkt(0), 0.0)
    assert buffer.push(pkt(2), 20.0) == []
    assert buffer.tick(79.0) == []
    assert shape(buffer.tick(80.0)) == [(1, 1), 2]
    assert JitterBuffer(depth=1).tick(1e9) == []  # no max_wait: only depth decides


def test_flush_releases_everything() -> None:
    buffer = JitterBuffer(depth=10)
    push_all(buffer, [0, 3, 2, 6])
    assert shape(buffer.flush()) == [(1, 1), 2, 3, (4, 2), 6]
    assert buffer.held == 0 and buffer.lost == 3


def test_ssrc_change_flushes_and_restarts() -> None:
    buffer = JitterBuffer(depth=10)
    push_all(buffer, [0, 2], ssrc=1)
    out = buffer.push(pkt(900, ssrc=2), 5.0)
    assert shape(out) == [(1, 1), 2, 900]
    assert buffer.restarts == 1


def test_huge_jump_is_a_restart_not_a_loss() -> None:
    buffer = JitterBuffer(depth=3)
    assert shape(push_all(buffer, [0, 1, 20000, 20001])) == [0, 1, 20000, 20001]
    assert buffer.lost == 0 and buffer.restarts == 1


def test_captured_stream_passes_through_swapped_in_pairs() -> None:
    require_captures()
    packets = [parse_rtp(payload) for payload in captured("g711a.pcap", limit=AUDIO_HEAD)]
    arrival_order = [packets[0]]
    for i in range(1, len(packets), 2):
        arrival_order += packets[i : i + 2][::-1]
    assert arrival_order != packets
    buffer = JitterBuffer(depth=2)
    out = [o for i, p in enumerate(arrival_order) for o in buffer.push(p, float(i))] + buffer.flush()
    assert out == packets
    assert (buffer.lost, buffer.late, buffer.released) == (0, 0, len(packets))


def test_negative_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        JitterBuffer(depth=-1)


@given(st.lists(st.integers(0, 60), min_size=1, max_size=80), st.integers(0, 8), st.integers(0, 65535))
def test_output_is_ordered_and_accounts_for_every_sequence(seqs: list[int], depth: int, base: int) -> None:
    buffer = JitterBuffer(depth=depth)
    out = push_all(buffer, [base + s for s in seqs]) + buffer.flush()
    # Walking the output covers consecutive sequence numbers without overlap.
    expected = (base + seqs[0]) % 65536
    delivered = set()
    for o in out:
        if isinstance(o, RtpPacket):
            assert o.sequence == expected
            delivered.add(o.sequence)
            expected = (expected + 1) % 65536
        else:
            assert o.first_sequence == expected and o.count > 0
            expected = (expected + o.count) % 65536
    assert buffer.held == 0
    assert buffer.released == len(delivered)
    assert buffer.released + buffer.late + buffer.duplicates == len(seqs)
