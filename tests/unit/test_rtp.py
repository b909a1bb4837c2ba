"""RTP/RTCP wire format: captured packets, truncated copies, round trips."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.media.rtp import (
    RtcpBye,
    RtcpError,
    RtcpReceiverReport,
    RtcpReportBlock,
    RtcpSenderReport,
    RtpError,
    RtpExtension,
    RtpPacket,
    build_receiver_report,
    is_rtcp,
    parse_rtcp,
    parse_rtp,
)
from tests.conftest import missing
from tests.fixtures.rtp import AUDIO_HEAD, SIP_TESTER, captured, require_captures
from tests.fixtures.rtp.pcap import udp_datagrams

SIPP_DIR = SIP_TESTER
CAPTURED = captured("g711a.pcap", limit=AUDIO_HEAD) + [
    payload for f in sorted(SIP_TESTER.glob("dtmf_2833_*.pcap")) for payload in captured(f.name)
]


def test_fixtures_hold_packets() -> None:
    require_captures()
    assert len(CAPTURED) == 60 + 12 * 10


@pytest.mark.parametrize("index", range(len(CAPTURED)))
def test_captured_packet_round_trips_byte_exact(index: int) -> None:
    data = CAPTURED[index]
    assert not is_rtcp(data)
    assert parse_rtp(data).serialize() == data


def test_captured_audio_header_fields() -> None:
    require_captures()
    first = parse_rtp(CAPTURED[0])
    assert (first.version, first.payload_type, first.marker) == (2, 8, True)
    assert (first.sequence, first.timestamp, first.ssrc) == (0xE6FD, 0xF0, 0xDEE0EE8F)
    assert len(first.payload) == 240 and first.csrc == () and first.extension is None
    second = parse_rtp(CAPTURED[1])
    assert (second.sequence, second.timestamp, second.marker) == (0xE6FE, 0x1E0, False)


def test_whole_sipp_capture_round_trips() -> None:
    capture = SIPP_DIR / "g711a.pcap"
    if not capture.is_file():
        missing(f"{capture} (Debian package sip-tester)")
    datagrams = udp_datagrams(capture)
    assert len(datagrams) == 236
    for datagram in datagrams:
        assert parse_rtp(datagram.payload).serialize() == datagram.payload


@pytest.mark.parametrize("length", range(12))
def test_truncated_header(length: int) -> None:
    with pytest.raises(RtpError, match="RTP packet length is less than 12 bytes"):
        parse_rtp(CAPTURED[0][:length])


def test_bad_version() -> None:
    data = bytes([0x40]) + CAPTURED[0][1:]
    with pytest.raises(RtpError, match="RTP packet has invalid version 1"):
        parse_rtp(data)


FULL = RtpPacket(
    payload_type=0, sequence=7, timestamp=160, ssrc=0x1234, marker=True,
    csrc=(1, 2, 3), extension=RtpExtension(profile=0xBEDE, data=b"\x10\xff\x00\x00"),
    padding=4, payload=b"\xff" * 20,
).serialize()


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (12, "RTP packet has truncated CSRC"),
        (12 + 11, "RTP packet has truncated CSRC"),
        (24, "RTP packet has truncated extension profile / length"),
        (27, "RTP packet has truncated extension profile / length"),
        (28, "RTP packet has truncated extension value"),
        (31, "RTP packet has truncated extension value"),
    ],
)
def test_truncated_copies(cut: int, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_rtp(FULL[:cut])


def test_full_packet_fields() -> None:
    packet = parse_rtp(FULL)
    assert packet.csrc == (1, 2, 3)
    assert packet.extension == RtpExtension(profile=0xBEDE, data=b"\x10\xff\x00\x00")
    assert packet.padding == 4 and packet.payload == b"\xff" * 20


@pytest.mark.parametrize("padding", [0, 200])
def test_bad_padding_length(padding: int) -> None:
    data = bytearray(CAPTURED[0][: 12 + 100])
    data[0] |= 0x20
    data[-1] = padding
    with pytest.raises(RtpError, match=f"RTP packet padding length {padding} is invalid"):
        parse_rtp(bytes(data))


def test_padding_may_fill_the_whole_payload() -> None:
    data = bytes([0xA0]) + CAPTURED[0][1:12] + b"\x00\x00\x00\x04"
    assert parse_rtp(data).payload == b"" and parse_rtp(data).padding == 4


def test_invalid_fields_are_local_errors() -> None:
    with pytest.raises(ValueError, match="payload type 128"):
        RtpPacket(payload_type=128, sequence=0, timestamp=0, ssrc=0)
    with pytest.raises(ValueError, match="at most 15 CSRCs"):
        RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=0, csrc=tuple(range(16)))
    with pytest.raises(ValueError, match="whole 32-bit words"):
        RtpExtension(profile=1, data=b"abc")


@pytest.mark.parametrize(
    ("second_byte", "rtcp"),
    [(200, True), (201, True), (192, True), (223, True), (0x08, False), (0x88, False), (224, False)],
)
def test_rtcp_demultiplexing(second_byte: int, rtcp: bool) -> None:
    assert is_rtcp(bytes([0x80, second_byte, 0, 1])) is rtcp
    assert not is_rtcp(b"\x80")


u32 = st.integers(0, 0xFFFFFFFF)
packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=u32,
    ssrc=u32,
    marker=st.booleans(),
    csrc=st.lists(u32, max_size=15).map(tuple),
    extension=st.none() | st.builds(
        RtpExtension,
        profile=st.integers(0, 0xFFFF),
        data=st.integers(0, 8).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    ),
    padding=st.integers(0, 255),
    payload=st.binary(max_size=300),
)


@given(packets)
def test_round_trip(packet: RtpPacket) -> None:
    assert parse_rtp(packet.serialize()) == packet


@given(packets, st.data())
def test_any_truncation_is_an_rtp_error_or_a_shorter_packet(packet: RtpPacket, data: st.DataObject) -> None:
    wire = packet.serialize()
    cut = data.draw(st.integers(0, len(wire)))
    try:
        parse_rtp(wire[:cut])
    except RtpError:
        pass


# RTCP -------------------------------------------------------------------------------

blocks = st.builds(
    RtcpReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    packets_lost=st.integers(-(1 << 23), (1 << 23) - 1),
    highest_sequence=u32,
    jitter=u32,
    last_sr=u32,
    delay_since_last_sr=u32,
)
rtcp_packets = st.one_of(
    st.builds(RtcpReceiverReport, ssrc=u32, reports=st.lists(blocks, max_size=3).map(tuple)),
    st.builds(
        RtcpSenderReport, ssrc=u32, ntp_timestamp=st.integers(0, (1 << 64) - 1), rtp_timestamp=u32,
        packet_count=u32, octet_count=u32, reports=st.lists(blocks, max_size=3).map(tuple),
    ),
    st.builds(
        RtcpBye,
        sources=st.lists(u32, max_size=4).map(tuple),
        reason=st.text(max_size=30).filter(lambda t: len(t.encode()) <= 255),
    ),
)


@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_rtcp_compound_round_trip(items: list[RtcpReceiverReport | RtcpSenderReport | RtcpBye]) -> None:
    wire = b"".join(item.serialize() for item in items)
    assert is_rtcp(wire)
    assert parse_rtcp(wire) == items


def test_receiver_report_layout() -> None:
    block = RtcpReportBlock(
        ssrc=0xDEE0EE8F, fraction_lost=64, packets_lost=-3, highest_sequence=0x1_0005,
        jitter=12, last_sr=0x12345678, delay_since_last_sr=65536,
    )
    wire = build_receiver_report(0x01020304, [block])
    assert wire[:8] == bytes([0x81, 201, 0, 7, 1, 2, 3, 4])
    assert wire[8:16] == bytes.fromhex("dee0ee8f") + bytes([64, 0xFF, 0xFF, 0xFD])
    assert len(wire) == 32
    assert parse_rtcp(wire) == [RtcpReceiverReport(ssrc=0x01020304, reports=(block,))]


def test_receiver_report_with_cname_skips_sdes_on_parse() -> None:
    wire = build_receiver_report(5, [], cname="hub@cti")
    assert len(wire) % 4 == 0
    sdes = wire[8:]
    assert sdes[1] == 202 and sdes[0] & 0x1F == 1
    assert struct.unpack("!H", sdes[2:4])[0] * 4 + 4 == len(sdes)
    assert parse_rtcp(wire) == [RtcpReceiverReport(ssrc=5)]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"\x80\xc9\x00", "RTCP packet length is less than 4 bytes"),
        (b"\x40\xc9\x00\x01\x00\x00\x00\x05", "RTCP packet has invalid version 1"),
        (b"\x80\xc9\x00\x02\x00\x00\x00\x05", "RTCP packet is truncated"),
        (b"\x81\xc9\x00\x01\x00\x00\x00\x05", "RTCP receiver report is truncated"),
        (b"\x80\xc8\x00\x01\x00\x00\x00\x05", "RTCP sender report is truncated"),
        (b"\x82\xcb\x00\x01\x00\x00\x00\x05", "RTCP BYE is truncated"),
        (b"\x81\xcb\x00\x02\x00\x00\x00\x05\x09abc", "RTCP BYE has a truncated reason"),
        (b"\x80\xc9\x00\x01\x00\x00\x00\x05\x80", "RTCP packet has a truncated header"),
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x00", "RTCP packet padding length 0 is invalid"),
    ],
)
def test_rtcp_errors(wire: bytes, message: str) -> None:
    with pytest.raises(RtcpError, match=message):
        parse_rtcp(wire)


def test_rtcp_error_is_an_rtp_error() -> None:
    assert issubclass(RtcpError, RtpError) and issubclass(RtpError, ValueError)

