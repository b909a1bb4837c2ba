"""RFC 4733 telephone-events to digits: sipp captures, loss, repeats, reordering."""

from __future__ import annotations

import functools
import random
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.media.dtmf import (
    DigitReceived,
    DtmfError,
    DtmfReceiver,
    TelephoneEvent,
    parse_sip_info_dtmf,
    parse_telephone_event,
)
from cti.media.rtp import RtpPacket, parse_rtp
from tests.fixtures.rtp import SIP_TESTER, require_captures
from tests.fixtures.rtp.pcap import udp_datagrams

FIXTURES = SIP_TESTER
CAPTURES = {
    "0": "dtmf_2833_0.pcap", "1": "dtmf_2833_1.pcap", "2": "dtmf_2833_2.pcap",
    "3": "dtmf_2833_3.pcap", "4": "dtmf_2833_4.pcap", "5": "dtmf_2833_5.pcap",
    "6": "dtmf_2833_6.pcap", "7": "dtmf_2833_7.pcap", "8": "dtmf_2833_8.pcap",
    "9": "dtmf_2833_9.pcap", "*": "dtmf_2833_star.pcap", "#": "dtmf_2833_pound.pcap",
}


@functools.cache
def _capture(name: str) -> tuple[RtpPacket, ...]:
    require_captures()
    return tuple(parse_rtp(d.payload) for d in udp_datagrams(FIXTURES / name))


def capture(name: str) -> list[RtpPacket]:
    return list(_capture(name))


def feed(receiver: DtmfReceiver, packets: list[RtpPacket]) -> list[DigitReceived]:
    return [digit for packet in packets for digit in receiver.receive_packet(packet)]


@pytest.mark.parametrize(("digit", "name"), sorted(CAPTURES.items()))
def test_each_sipp_capture_yields_its_digit_once(digit: str, name: str) -> None:
    packets = capture(name)
    assert len(packets) == 10 and packets[0].marker and packets[0].payload_type == 101
    assert [parse_telephone_event(p.payload).end for p in packets] == [False] * 7 + [True] * 3
    digits = feed(DtmfReceiver(), packets)
    assert digits == [DigitReceived(digit=digit, duration_ms=280, rtp_timestamp=packets[0].timestamp)]


def test_the_digit_comes_out_on_the_first_end_packet() -> None:
    receiver = DtmfReceiver()
    packets = capture("dtmf_2833_5.pcap")
    assert feed(receiver, packets[:7]) == []
    assert [d.digit for d in receiver.receive_packet(packets[7])] == ["5"]
    assert feed(receiver, packets[8:]) == []
    assert receiver.ignored == 2


def test_retransmitted_start_packets_are_one_digit() -> None:
    receiver = DtmfReceiver()
    start = TelephoneEvent(event=3, duration=0)
    assert receiver.receive(1000, True, start) == []
    assert receiver.receive(1000, True, start) == []
    assert receiver.receive(1000, True, start) == []
    end = TelephoneEvent(event=3, end=True, duration=800)
    assert receiver.receive(1000, False, end) == [DigitReceived(digit="3", duration_ms=100, rtp_timestamp=1000)]


def test_lost_end_packets_emit_when_the_next_event_starts() -> None:
    receiver = DtmfReceiver()
    receiver.receive(1000, True, TelephoneEvent(event=1, duration=0))
    receiver.receive(1000, False, TelephoneEvent(event=1, duration=480))
    out = receiver.receive(3000, True, TelephoneEvent(event=2, duration=0))
    assert out == [DigitReceived(digit="1", duration_ms=60, rtp_timestamp=1000)]
    out = receiver.receive(3000, False, TelephoneEvent(event=2, end=True, duration=640))
    assert out == [DigitReceived(digit="2", duration_ms=80, rtp_timestamp=3000)]


def test_lost_end_packets_emit_after_the_silence_timeout() -> None:
    receiver = DtmfReceiver(silence_timeout=4000)
    receiver.receive(1000, True, TelephoneEvent(event=9, duration=400))
    assert receiver.tick(1000 + 400 + 3999) == []
    assert receiver.tick(1000 + 400 + 4000) == [DigitReceived(digit="9", duration_ms=50, rtp_timestamp=1000)]
    assert receiver.tick(20_000) == []
    # A straggler of the timed-out digit does not bring it back.
    assert receiver.receive(1000, False, TelephoneEvent(event=9, end=True, duration=800)) == []


def test_tick_before_the_event_position_does_nothing() -> None:
    receiver = DtmfReceiver(silence_timeout=100)
    receiver.receive(50_000, True, TelephoneEvent(event=4, duration=160))
    assert receiver.tick(10) == []  # a clock estimate behind the event: not quiet yet


def test_same_digit_twice_is_two_digits() -> None:
    receiver = DtmfReceiver()
    out = []
    for ts in (8000, 16000):
        out += receiver.receive(ts, True, TelephoneEvent(event=7, duration=0))
        for _ in range(3):
            out += receiver.receive(ts, False, TelephoneEvent(event=7, end=True, duration=800))
    assert [(d.digit, d.rtp_timestamp) for d in out] == [("7", 8000), ("7", 16000)]


def test_same_digit_twice_with_lost_end_and_marker_is_two_digits() -> None:
    receiver = DtmfReceiver()
    out = receiver.receive(8000, True, TelephoneEvent(event=7, duration=640))
    out += receiver.receive(10_000, False, TelephoneEvent(event=7, duration=320))
    out += receiver.receive(10_000, False, TelephoneEvent(event=7, end=True, duration=640))
    assert [(d.digit, d.rtp_timestamp) for d in out] == [("7", 8000), ("7", 10_000)]


def test_long_event_segments_are_one_digit() -> None:
    # RFC 4733 long-duration events: past 0xFFFF units the event continues under a new timestamp,
    # without the marker bit.
    receiver = DtmfReceiver()
    out = receiver.receive(100, True, TelephoneEvent(event=0, duration=0))
    out += receiver.receive(100, False, TelephoneEvent(event=0, duration=0xFFFF))
    out += receiver.receive(100 + 0xFFFF, False, TelephoneEvent(event=0, duration=800))
    out += receiver.receive(100, False, TelephoneEvent(event=0, duration=0xFF00))  # straggler
    out += receiver.receive(100 + 0xFFFF, False, TelephoneEvent(event=0, end=True, duration=1600))
    assert out == [DigitReceived(digit="0", duration_ms=(0xFFFF + 1600) // 8, rtp_timestamp=100)]


def test_older_digit_arriving_late_still_comes_first() -> None:
    receiver = DtmfReceiver()
    out = receiver.receive(5000, True, TelephoneEvent(event=2, duration=0))
    out += receiver.receive(1000, True, TelephoneEvent(event=1, duration=320))
    out += receiver.receive(1000, False, TelephoneEvent(event=1, end=True, duration=640))
    out += receiver.receive(5000, False, TelephoneEvent(event=2, end=True, duration=640))
    assert [(d.digit, d.rtp_timestamp) for d in out] == [("1", 1000), ("2", 5000)]


def test_digit_older_than_one_already_given_is_dropped() -> None:
    receiver = DtmfReceiver()
    receiver.receive(5000, True, TelephoneEvent(event=2, end=True, duration=640))
    assert receiver.receive(1000, True, TelephoneEvent(event=1, end=True, duration=640)) == []


def test_timestamps_wrap_around() -> None:
    receiver = DtmfReceiver()
    out = receiver.receive(0xFFFF_FF00, True, TelephoneEvent(event=10, end=True, duration=800))
    out += receiver.receive(0x0000_0100, True, TelephoneEvent(event=11, end=True, duration=800))
    out += receiver.receive(0xFFFF_FF00, False, TelephoneEvent(event=10, end=True, duration=800))
    assert [d.digit for d in out] == ["*", "#"]


def test_non_digit_events_are_not_digits() -> None:
    receiver = DtmfReceiver()
    assert receiver.receive(100, True, TelephoneEvent(event=16, end=True, duration=800)) == []
    assert TelephoneEvent(event=16).digit is None
    assert [TelephoneEvent(event=e).digit for e in range(16)] == list("0123456789*#ABCD")


def test_reset_forgets_the_stream() -> None:
    receiver = DtmfReceiver()
    receiver.receive(5000, True, TelephoneEvent(event=2, end=True, duration=640))
    receiver.reset()
    assert [d.digit for d in receiver.receive(10, True, TelephoneEvent(event=3, end=True))] == ["3"]


def sequence_of(digits: str) -> list[RtpPacket]:
    """The captures of `digits` played one after the other, renumbered as one stream."""
    packets: list[RtpPacket] = []
    for index, digit in enumerate(digits):
        for packet in capture(CAPTURES[digit]):
            packets.append(
                replace(
                    packet,
                    timestamp=(0xFFFF_0000 + 4000 * index) % (1 << 32),
                    sequence=(index * 8 + packet.sequence % 8) % (1 << 16),
                )
            )
    return packets


digit_strings = st.text(alphabet="0123456789*#", min_size=1, max_size=6)


@given(digit_strings, st.randoms(use_true_random=False))
def test_mild_reordering_keeps_every_digit_once_in_order(digits: str, rnd: random.Random) -> None:
    packets = sequence_of(digits)
    # Each packet moves fewer than 3 places: digits still follow each other.
    order = sorted(range(len(packets)), key=lambda i: i + rnd.uniform(0, 3))
    out = feed(DtmfReceiver(), [packets[i] for i in order])
    assert "".join(d.digit for d in out) == digits


@given(digit_strings, st.randoms(use_true_random=False))
def test_any_reordering_never_duplicates_nor_disorders(digits: str, rnd: random.Random) -> None:
    packets = sequence_of(digits)
    rnd.shuffle(packets)
    receiver = DtmfReceiver()
    out = feed(receiver, packets) + receiver.tick(0xFFFF_0000 + 4000 * len(digits) + 100_000)
    stamps = [d.rtp_timestamp for d in out]
    expected = [(0xFFFF_0000 + 4000 * i) % (1 << 32) for i in range(len(digits))]
    assert len(set(stamps)) == len(stamps)
    assert all(expected.index(a) < expected.index(b) for a, b in zip(stamps, stamps[1:]))
    assert all(d.digit == digits[expected.index(d.rtp_timestamp)] for d in out)


@given(digit_strings, st.randoms(use_true_random=False))
def test_loss_without_reordering_keeps_each_surviving_digit(digits: str, rnd: random.Random) -> None:
    packets = sequence_of(digits)
    kept = [p for p in packets if rnd.random() < 0.4]
    receiver = DtmfReceiver()
    out = feed(receiver, kept) + receiver.tick(0xFFFF_0000 + 4000 * len(digits) + 100_000)
    surviving = sorted({p.timestamp for p in kept}, key=lambda ts: (ts - 0xFFFF_0000) % (1 << 32))
    assert [d.rtp_timestamp for d in out] == surviving


@given(
    st.builds(
        TelephoneEvent,
        event=st.integers(0, 255), end=st.booleans(),
        volume=st.integers(0, 63), duration=st.integers(0, 0xFFFF),
    )
)
def test_telephone_event_round_trip(event: TelephoneEvent) -> None:
    assert parse_telephone_event(event.serialize()) == event


def test_telephone_event_wire_format() -> None:
    assert TelephoneEvent(event=5, end=True, volume=10, duration=2240).serialize() == bytes.fromhex("058a08c0")
    # The reserved bit is ignored on receipt (RFC 4733 §2.3).
    assert parse_telephone_event(bytes.fromhex("05ca08c0")) == TelephoneEvent(event=5, end=True, volume=10, duration=2240)


@pytest.mark.parametrize("length", range(4))
def test_truncated_telephone_event(length: int) -> None:
    with pytest.raises(DtmfError, match=f"telephone-event payload is {length} bytes, expected at least 4"):
        parse_telephone_event(bytes.fromhex("058a08c0")[:length])


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("Application/DTMF-Relay; charset=utf-8", b"Signal= #\r\nDuration= 250", "#"),
        ("application/dtmf-relay", b"signal=*\nDuration=100", "*"),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=160", "#"),
        ("application/dtmf-relay", b"Signal=a\r\n", "A"),
        ("application/dtmf-relay", b"Duration=160\r\n", None),
        ("application/dtmf-relay", b"Signal=X\r\n", None),
        ("application/dtmf", b"5", "5"),
        ("application/dtmf", b" 9\r\n", "9"),
        ("application/dtmf", b"", None),
        ("application/sdp", b"Signal=5", None),
        ("text/plain", b"5", None),
    ],
)
def test_sip_info_dtmf(content_type: str, body: bytes, digit: str | None) -> None:
    assert parse_sip_info_dtmf(content_type, body) == digit
