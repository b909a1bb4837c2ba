"""Reception statistics (RFC 3550 A.1, A.3, A.8): loss, reordering, wrap, restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.media.rtp import RtcpReceiverReport, build_receiver_report, parse_rtcp, parse_rtp
from cti.media.stats import ReceiveStatistics, is_silent
from tests.fixtures.rtp import AUDIO_HEAD, SIP_TESTER, require_captures
from tests.fixtures.rtp.pcap import udp_datagrams



def feed(stats: ReceiveStatistics, seqs: list[int], *, ssrc: int = 1, step: int = 160) -> list[bool]:
    # Perfectly paced arrivals: transit is constant unless a test says otherwise.
    return [stats.update(ssrc=ssrc, sequence=s % 65536, timestamp=i * step, arrival=i * step) for i, s in enumerate(seqs)]


def test_in_order_stream_has_no_loss() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    feed(stats, list(range(100, 150)))
    assert (stats.received, stats.expected, stats.lost) == (50, 50, 0)
    assert stats.extended_highest_sequence == 149
    assert stats.jitter == 0 and stats.fraction_lost() == 0


def test_probation_needs_two_in_sequence() -> None:
    stats = ReceiveStatistics()  # RFC default: MIN_SEQUENTIAL = 2
    assert feed(stats, [10, 11, 12]) == [False, True, True]
    assert (stats.received, stats.expected) == (2, 2)


def test_probation_restarts_on_a_jump() -> None:
    stats = ReceiveStatistics()
    assert feed(stats, [10, 20, 21, 22]) == [False, False, True, True]
    assert stats.expected == 2


def test_loss_cumulative_and_fraction() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    feed(stats, [s for s in range(0, 100) if s % 4 != 3])  # every fourth lost
    assert stats.expected == 99  # highest is 98
    assert stats.lost == 24
    block = stats.report_block()
    assert block.fraction_lost == 24 * 256 // 99
    assert block.packets_lost == 24 and block.highest_sequence == 98
    assert stats.fraction_lost() == 0  # a new interval starts after the report


def test_fraction_lost_is_per_interval() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    feed(stats, list(range(0, 10)))
    stats.report_block()
    feed(stats, [10, 12, 14, 16, 18, 19])
    assert stats.fraction_lost() == 4 * 256 // 10


def test_reordered_packet_counts_as_late_not_lost() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    feed(stats, [0, 1, 3, 4, 2, 5])
    assert (stats.received, stats.lost, stats.late, stats.duplicates) == (6, 0, 1, 0)


def test_duplicates_are_counted_apart_and_do_not_hide_loss() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    feed(stats, [0, 1, 1, 3, 4, 3, 0])
    assert stats.duplicates == 3
    assert (stats.received, stats.expected, stats.lost) == (4, 5, 1)


def test_sequence_wrap_extends_the_highest_sequence() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    feed(stats, list(range(65530, 65536 + 10)))
    assert stats.extended_highest_sequence == 65536 + 9
    assert (stats.expected, stats.lost) == (16, 0)
    assert stats.report_block().highest_sequence == 0x1_0009


def test_late_packet_across_the_wrap() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    feed(stats, [65534, 0, 1, 65535, 2])
    assert (stats.received, stats.lost, stats.late) == (5, 0, 1)
    assert stats.extended_highest_sequence == 65536 + 2


def test_large_jump_is_believed_on_the_second_packet() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    assert feed(stats, [0, 1, 2, 20000, 20001, 20002]) == [True, True, True, False, True, True]
    assert stats.rejected == 1
    assert (stats.received, stats.expected, stats.lost) == (2, 2, 0)


def test_single_stray_packet_far_away_is_rejected() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    assert feed(stats, [0, 1, 30000, 2, 3]) == [True, True, False, True, True]
    assert (stats.received, stats.expected) == (4, 4)


def test_ssrc_change_restarts() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    feed(stats, [0, 1, 5], ssrc=1)
    feed(stats, [7000, 7001], ssrc=2)
    assert stats.ssrc == 2 and stats.ssrc_changes == 1
    assert (stats.received, stats.expected, stats.lost) == (2, 2, 0)


def test_jitter_follows_a8() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    # Timestamps advance 160 per packet; arrivals alternate 0 and 80 units late.
    for i in range(200):
        stats.update(ssrc=1, sequence=i, timestamp=160 * i, arrival=160 * i + (80 if i % 2 else 0))
    assert 75 <= stats.jitter <= 80  # converges to |D| = 80


def test_jitter_ignores_timestamp_wrap() -> None:
    stats = ReceiveStatistics(min_sequential=1)
    for i in range(50):
        ts = (0xFFFF_FF00 + 160 * i) % (1 << 32)
        stats.update(ssrc=1, sequence=i, timestamp=ts, arrival=1000 + 160 * i)
    assert stats.jitter == 0


def test_silence_check() -> None:
    stats = ReceiveStatistics()
    assert stats.is_silent(0, 8000)
    stats.update(ssrc=1, sequence=1, timestamp=0, arrival=1000)
    assert not stats.is_silent(8999, 8000)
    assert stats.is_silent(9000, 8000)
    assert is_silent(None, 0, 1) and not is_silent(5.0, 5.5, 1.0)


def test_report_block_needs_a_source() -> None:
    with pytest.raises(ValueError, match="nothing to report"):
        ReceiveStatistics().report_block()


def test_statistics_of_the_captured_call_feed_a_receiver_report() -> None:
    require_captures()
    stats = ReceiveStatistics()
    datagrams = udp_datagrams(SIP_TESTER / "g711a.pcap")[:AUDIO_HEAD]
    for datagram in datagrams:
        packet = parse_rtp(datagram.payload)
        arrival = (datagram.time - datagrams[0].time) * 8000
        stats.update(ssrc=packet.ssrc, sequence=packet.sequence, timestamp=packet.timestamp, arrival=arrival)
    assert (stats.expected, stats.lost) == (59, 0)
    assert 0 < stats.jitter < 80  # sipp paces 30 ms packets with a few ms of wobble
    wire = build_receiver_report(0xABCD, [stats.report_block(last_sr=7, delay_since_last_sr=9)])
    (report,) = parse_rtcp(wire)
    assert isinstance(report, RtcpReceiverReport)
    assert report.reports[0].ssrc == 0xDEE0EE8F and report.reports[0].highest_sequence == 0xE6FD + 59


@given(st.lists(st.integers(0, 400), max_size=300), st.integers(0, 65535))
def test_loss_matches_a_set_model_without_reordering(kept: list[int], base: int) -> None:
    seqs = sorted(set(kept))
    stats = ReceiveStatistics(min_sequential=1)
    feed(stats, [base + s for s in seqs])
    if seqs:
        span = seqs[-1] - seqs[0] + 1
        assert (stats.expected, stats.received, stats.lost) == (span, len(seqs), span - len(seqs))


@given(st.permutations(list(range(40))), st.integers(0, 65535))
def test_reordering_within_the_misorder_window_loses_nothing(order: list[int], base: int) -> None:
    stats = ReceiveStatistics(min_sequential=1)
    feed(stats, [base + s for s in order])
    highest_so_far = [max(order[: i + 1]) for i in range(len(order))]
    late = sum(1 for i, s in enumerate(order) if s < highest_so_far[i])
    assert (stats.received, stats.duplicates, stats.late) == (40, 0, late)
    assert stats.extended_highest_sequence % 65536 == (base + 39) % 65536
    # Packets older than the first one are received but were never expected (A.1):
    # cumulative loss goes negative by that many, as RFC 3550 §6.4.1 allows.
    assert stats.lost == -order[0]
