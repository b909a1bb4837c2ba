"""RTP packets (RFC 3550 §5) and the few RTCP packets the hub reads and writes (pure).

Owns the wire format: RTP parse/serialize with precise errors, RTP/RTCP demultiplexing
on one port (RFC 5761 §4), and RTCP sender reports, receiver reports and BYE (RFC 3550
§6.4, §6.6) -- enough for statistics and for answering with receiver reports. Other
RTCP packet types are skipped, not rejected. This module must never touch sockets,
clocks or asyncio: the endpoint adapter hands it bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_LENGTH = 12

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203


class RtpError(ValueError):
    """The peer sent bytes that are not a valid RTP or RTCP packet."""


class RtcpError(RtpError):
    pass


def _check_range(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} {value} does not fit in {bits} bits")


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpExtension:
    """A header extension (RFC 3550 §5.3.1): a 16-bit profile and whole 32-bit words."""

    profile: int
    data: bytes = b""

    def __post_init__(self) -> None:
        _check_range("extension profile", self.profile, 16)
        if len(self.data) % 4:
            raise ValueError(f"extension data must be whole 32-bit words, got {len(self.data)} bytes")
        if len(self.data) // 4 > 0xFFFF:
            raise ValueError("extension data is longer than 65535 words")


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP packet. `padding` is the padding length in bytes, count byte included.

    Padding is serialized as zeros followed by the count; RFC 3550 leaves the filler
    undefined, so a captured packet with non-zero filler does not round-trip byte-exact.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0
    payload: bytes = b""

    def __post_init__(self) -> None:
        _check_range("payload type", self.payload_type, 7)
        _check_range("sequence number", self.sequence, 16)
        _check_range("timestamp", self.timestamp, 32)
        _check_range("SSRC", self.ssrc, 32)
        if len(self.csrc) > 15:
            raise ValueError(f"an RTP packet carries at most 15 CSRCs, got {len(self.csrc)}")
        for source in self.csrc:
            _check_range("CSRC", source, 32)
        _check_range("padding length", self.padding, 8)

    @property
    def version(self) -> int:
        return RTP_VERSION

    def serialize(self) -> bytes:
        first = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        parts = [
            struct.pack("!BBHII", first, second, self.sequence, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension is not None:
            ext = self.extension
            parts.append(struct.pack("!HH", ext.profile, len(ext.data) // 4))
            parts.append(ext.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """RTP and RTCP multiplexed on one port (RFC 5761 §4): RTCP types fill 192-223."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet; raises RtpError saying what is wrong with it."""
    if len(data) < RTP_HEADER_LENGTH:
        raise RtpError(f"RTP packet length is less than {RTP_HEADER_LENGTH} bytes")
    first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
    version = first >> 6
    if version != RTP_VERSION:
        raise RtpError(f"RTP packet has invalid version {version}")
    csrc_count = first & 0x0F
    pos = RTP_HEADER_LENGTH
    if len(data) < pos + 4 * csrc_count:
        raise RtpError("RTP packet has truncated CSRC")
    csrc = struct.unpack_from(f"!{csrc_count}I", data, pos)
    pos += 4 * csrc_count
    extension = None
    if first & 0x10:
        if len(data) < pos + 4:
            raise RtpError("RTP packet has truncated extension profile / length")
        profile, words = struct.unpack_from("!HH", data, pos)
        pos += 4
        if len(data) < pos + 4 * words:
            raise RtpError("RTP packet has truncated extension value")
        extension = RtpExtension(profile=profile, data=bytes(data[pos : pos + 4 * words]))
        pos += 4 * words
    end = len(data)
    padding = 0
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or padding > end - pos:
            raise RtpError(f"RTP packet padding length {padding} is invalid")
        end -= padding
    return RtpPacket(
        payload_type=second & 0x7F,
        marker=bool(second & 0x80),
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        csrc=csrc,
        extension=extension,
        padding=padding,
        payload=bytes(data[pos:end]),
    )


# RTCP -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpReportBlock:
    """Reception statistics about one source (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    packets_lost: int  # cumulative, signed 24 bits: duplicates can make it negative
    highest_sequence: int  # extended: cycles << 16 | highest sequence number
    jitter: int
    last_sr: int = 0  # middle 32 bits of the NTP timestamp of the last SR received
    delay_since_last_sr: int = 0  # in units of 1/65536 s

    def __post_init__(self) -> None:
        _check_range("SSRC", self.ssrc, 32)
        _check_range("fraction lost", self.fraction_lost, 8)
        if not -(1 << 23) <= self.packets_lost < (1 << 23):
            raise ValueError(f"packets lost {self.packets_lost} does not fit in signed 24 bits")
        for name in ("highest_sequence", "jitter", "last_sr", "delay_since_last_sr"):
            _check_range(name.replace("_", " "), getattr(self, name), 32)

    def serialize(self) -> bytes:
        lost = self.packets_lost & 0xFFFFFF
        return struct.pack(
            "!IIIIII",
            self.ssrc,
            (self.fraction_lost << 24) | lost,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )


def _parse_blocks(data: bytes, pos: int, count: int) -> tuple[RtcpReportBlock, ...]:
    blocks = []
    for _ in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        blocks.append(
            RtcpReportBlock(
                ssrc=ssrc,
                fraction_lost=lost_word >> 24,
                packets_lost=lost,
                highest_sequence=highest,
                jitter=jitter,
                last_sr=lsr,
                delay_since_last_sr=dlsr,
            )
        )
        pos += 24
    return tuple(blocks)


def _header(packet_type: int, count: int, body: bytes) -> bytes:
    return struct.pack("!BBH", (RTP_VERSION << 6) | count, packet_type, len(body) // 4) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpSenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[RtcpReportBlock, ...] = ()

    def serialize(self) -> bytes:
        body = struct.pack(
            "!IQIII", self.ssrc, self.ntp_timestamp, self.rtp_timestamp,
            self.packet_count, self.octet_count,
        )
        body += b"".join(block.serialize() for block in self.reports)
        return _header(RTCP_SR, len(self.reports), body)


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpReceiverReport:
    ssrc: int
    reports: tuple[RtcpReportBlock, ...] = ()

    def serialize(self) -> bytes:
        if len(self.reports) > 31:
            raise ValueError("an RTCP receiver report carries at most 31 report blocks")
        body = struct.pack("!I", self.ssrc) + b"".join(block.serialize() for block in self.reports)
        return _header(RTCP_RR, len(self.reports), body)


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpBye:
    sources: tuple[int, ...]
    reason: str = ""

    def serialize(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason:
            reason = self.reason.encode()[:255]
            body += bytes([len(reason)]) + reason
        body += bytes(-len(body) % 4)
        return _header(RTCP_BYE, len(self.sources), body)


RtcpPacket = RtcpSenderReport | RtcpReceiverReport | RtcpBye


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet; types other than SR, RR and BYE are skipped."""
    packets: list[RtcpPacket] = []
    pos = 0
    if len(data) < 4:
        raise RtcpError("RTCP packet length is less than 4 bytes")
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtcpError("RTCP packet has a truncated header")
        first, packet_type, words = struct.unpack_from("!BBH", data, pos)
        if first >> 6 != RTP_VERSION:
            raise RtcpError(f"RTCP packet has invalid version {first >> 6}")
        count = first & 0x1F
        end = pos + 4 + 4 * words
        if end > len(data):
            raise RtcpError("RTCP packet is truncated")
        body_end = end
        if first & 0x20:
            padding = data[end - 1]
            if padding == 0 or padding > 4 * words:
                raise RtcpError(f"RTCP packet padding length {padding} is invalid")
            body_end -= padding
        body = pos + 4
        if packet_type == RTCP_SR:
            if body_end - body < 24 + 24 * count:
                raise RtcpError("RTCP sender report is truncated")
            ssrc, ntp, rtp_ts, packets_sent, octets = struct.unpack_from("!IQIII", data, body)
            packets.append(
                RtcpSenderReport(
                    ssrc=ssrc, ntp_timestamp=ntp, rtp_timestamp=rtp_ts,
                    packet_count=packets_sent, octet_count=octets,
                    reports=_parse_blocks(data, body + 24, count),
                )
            )
        elif packet_type == RTCP_RR:
            if body_end - body < 4 + 24 * count:
                raise RtcpError("RTCP receiver report is truncated")
            (ssrc,) = struct.unpack_from("!I", data, body)
            packets.append(RtcpReceiverReport(ssrc=ssrc, reports=_parse_blocks(data, body + 4, count)))
        elif packet_type == RTCP_BYE:
            if body_end - body < 4 * count:
                raise RtcpError("RTCP BYE is truncated")
            sources = struct.unpack_from(f"!{count}I", data, body)
            reason_at = body + 4 * count
            reason = ""
            if reason_at < body_end:
                length = data[reason_at]
                if reason_at + 1 + length > body_end:
                    raise RtcpError("RTCP BYE has a truncated reason")
                reason = bytes(data[reason_at + 1 : reason_at + 1 + length]).decode("utf-8", "replace")
            packets.append(RtcpBye(sources=sources, reason=reason))
        pos = end
    return packets


def _sdes_cname(ssrc: int, cname: str) -> bytes:
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\x00"
    chunk += bytes(-len(chunk) % 4)  # the item list ends with at least one zero octet
    return _header(RTCP_SDES, 1, chunk)


def build_receiver_report(
    ssrc: int, reports: tuple[RtcpReportBlock, ...] | list[RtcpReportBlock], *, cname: str | None = None
) -> bytes:
    """A compound RTCP packet: a receiver report, then SDES CNAME when `cname` is given.

    RFC 3550 §6.1 requires the CNAME in every compound packet; it is optional here only
    so that the report itself can be tested and reused alone.
    """
    packet = RtcpReceiverReport(ssrc=ssrc, reports=tuple(reports)).serialize()
    if cname is not None:
        packet += _sdes_cname(ssrc, cname)
    return packet
