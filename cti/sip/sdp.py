"""SDP (RFC 4566) and the offer/answer rules (RFC 3264) for G.711 audio and RFC 4733 DTMF.

Owns parsing and serializing session descriptions and choosing what to answer to an
offer. Must never open a port, pick an address or keep session state: the caller
gives the local address, port and o= numbers and remembers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT",
    "Codec",
    "Connection",
    "MediaDescription",
    "Origin",
    "SdpAnswer",
    "SdpError",
    "SessionDescription",
    "answer_offer",
    "make_offer",
    "parse_sdp",
    "serialize_sdp",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
# RFC 4566 §5: the order session-level lines must appear in.
_SESSION_ORDER = "vosiuepcbtrzka"
_MEDIA_ORDER = "micbka"


class SdpError(ValueError):
    """The SDP body is malformed."""


@dataclass(frozen=True)
class Codec:
    payload_type: int
    name: str
    clock_rate: int

    @property
    def rtpmap(self) -> str:
        return f"{self.name}/{self.clock_rate}"


PCMU = Codec(0, "PCMU", 8000)
PCMA = Codec(8, "PCMA", 8000)
TELEPHONE_EVENT = Codec(101, "telephone-event", 8000)

# RFC 3551 static payload types an offer may use without an rtpmap line.
_STATIC = {0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 8: ("PCMA", 8000),
           9: ("G722", 8000), 13: ("CN", 8000), 18: ("G729", 8000)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    username: str = "-"
    session_id: int
    session_version: int
    net_type: str = "IN"
    addr_type: str = "IP4"
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    net_type: str = "IN"
    addr_type: str = "IP4"
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaDescription:
    """One m= section. `formats` holds RTP payload types; non-numeric formats (e.g.
    an MSRP or T.38 line) go to `format_tokens` instead and `formats` is empty."""

    media: str = "audio"
    port: int
    port_count: int | None = None
    proto: str = "RTP/AVP"
    formats: tuple[int, ...] = ()
    format_tokens: tuple[str, ...] = ()
    rtpmap: dict[int, str] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    direction: str = "sendrecv"
    connection: Connection | None = None
    ptime: int | None = None
    attributes: tuple[str, ...] = ()  # other a= lines, without the "a="
    other_lines: tuple[tuple[str, str], ...] = ()  # i=, b=, k= lines as (type, value)

    @property
    def connection_address(self) -> str | None:
        return None if self.connection is None else self.connection.address


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    media: tuple[MediaDescription, ...] = ()
    direction: str | None = None  # session-level a=<direction>, when one was given
    attributes: tuple[str, ...] = ()
    other_lines: tuple[tuple[str, str], ...] = ()  # t=, i=, b=, ... as (type, value)

    @property
    def connection_address(self) -> str | None:
        return None if self.connection is None else self.connection.address


def _int(text: str, what: str, limit: int = 2**64) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 20 or int(text) > limit:
        raise SdpError(f"invalid {what}: {text[:30]!r}")
    return int(text)


def _is_small_int(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) < 6


def _connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError("c= needs <nettype> <addrtype> <address>")
    return Connection(net_type=parts[0], addr_type=parts[1], address=parts[2])


class _MediaBuilder:
    """Mutable scratch for one m= section while its lines are read."""

    def __init__(self, value: str, session_direction: str | None) -> None:
        parts = value.split()
        if len(parts) < 4:
            raise SdpError("m= needs <media> <port> <proto> <fmt>...")
        port_text, _, count = parts[1].partition("/")
        self.media, self.proto = parts[0], parts[2]
        self.port = _int(port_text, "port", 65535)
        self.port_count = _int(count, "port count", 65535) if count else None
        tokens = tuple(parts[3:])
        self.formats: tuple[int, ...] = ()
        self.tokens: tuple[str, ...] = ()
        if all(t.isascii() and t.isdigit() and len(t) <= 3 for t in tokens):
            self.formats = tuple(int(t) for t in tokens)
        else:
            self.tokens = tokens
        self.rtpmap: dict[int, str] = {}
        self.fmtp: dict[int, str] = {}
        self.direction = session_direction or "sendrecv"
        self.connection: Connection | None = None
        self.ptime: int | None = None
        self.attributes: list[str] = []
        self.other: list[tuple[str, str]] = []

    def attribute(self, value: str) -> None:
        name, colon, rest = value.partition(":")
        if name in DIRECTIONS and not colon:
            self.direction = name
        elif name in ("rtpmap", "fmtp") and colon:
            pt_text, _, text = rest.partition(" ")
            pt = _int(pt_text, f"{name} payload type", 127)
            (self.rtpmap if name == "rtpmap" else self.fmtp)[pt] = text.strip()
        elif name == "ptime" and colon and _is_small_int(rest.strip()):
            self.ptime = int(rest.strip())  # a fractional ptime stays a plain attribute
        else:
            self.attributes.append(value)

    def build(self) -> MediaDescription:
        return MediaDescription(
            media=self.media, port=self.port, port_count=self.port_count, proto=self.proto,
            formats=self.formats, format_tokens=self.tokens, rtpmap=self.rtpmap,
            fmtp=self.fmtp, direction=self.direction, connection=self.connection,
            ptime=self.ptime, attributes=tuple(self.attributes),
            other_lines=tuple(self.other),
        )


def parse_sdp(body: bytes) -> SessionDescription:
    """Parse an SDP body; raise SdpError when it is not SDP we can read."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8") from None
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line]
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    origin: Origin | None = None
    session_name = "-"
    connection: Connection | None = None
    direction: str | None = None
    attributes: list[str] = []
    other: list[tuple[str, str]] = []
    media: list[MediaDescription] = []
    current: _MediaBuilder | None = None
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpError(f"malformed SDP line {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            if current is not None:
                media.append(current.build())
            current = _MediaBuilder(value, direction)
        elif current is not None:
            if kind == "c":
                current.connection = _connection(value)
            elif kind == "a":
                current.attribute(value)
            else:
                current.other.append((kind, value))
        elif kind == "o":
            parts = value.split()
            if len(parts) != 6:
                raise SdpError("o= needs six fields")
            origin = Origin(
                username=parts[0], session_id=_int(parts[1], "session id"),
                session_version=_int(parts[2], "session version"), net_type=parts[3],
                addr_type=parts[4], address=parts[5],
            )
        elif kind == "s":
            session_name = value
        elif kind == "c":
            connection = _connection(value)
        elif kind == "a":
            if value in DIRECTIONS:
                direction = value
            else:
                attributes.append(value)
        elif kind == "v":
            raise SdpError("second v= line")
        else:
            other.append((kind, value))
    if current is not None:
        media.append(current.build())
    if origin is None:
        raise SdpError("missing o= line")
    return SessionDescription(
        origin=origin, session_name=session_name, connection=connection,
        media=tuple(media), direction=direction, attributes=tuple(attributes),
        other_lines=tuple(other),
    )


def _ordered(lines: list[tuple[str, str]], order: str) -> list[tuple[str, str]]:
    return sorted(lines, key=lambda kv: order.find(kv[0]) if kv[0] in order else len(order))


def serialize_sdp(sd: SessionDescription) -> bytes:
    o = sd.origin
    session: list[tuple[str, str]] = [
        ("o", f"{o.username} {o.session_id} {o.session_version} "
              f"{o.net_type} {o.addr_type} {o.address}"),
        ("s", sd.session_name or "-"),
        *sd.other_lines,
    ]
    if sd.connection is not None:
        c = sd.connection
        session.append(("c", f"{c.net_type} {c.addr_type} {c.address}"))
    if not any(kind == "t" for kind, _ in session):
        session.append(("t", "0 0"))  # t= is mandatory; "0 0" means unbounded
    if sd.direction is not None:
        session.append(("a", sd.direction))
    session.extend(("a", a) for a in sd.attributes)
    out = ["v=0", *(f"{k}={v}" for k, v in _ordered(session, _SESSION_ORDER))]
    for m in sd.media:
        port = f"{m.port}/{m.port_count}" if m.port_count is not None else str(m.port)
        fmts = " ".join(map(str, m.formats)) if m.formats else " ".join(m.format_tokens)
        out.append(f"m={m.media} {port} {m.proto} {fmts}")
        section: list[tuple[str, str]] = list(m.other_lines)
        if m.connection is not None:
            c = m.connection
            section.append(("c", f"{c.net_type} {c.addr_type} {c.address}"))
        section.extend(("a", f"rtpmap:{pt} {v}") for pt, v in m.rtpmap.items())
        section.extend(("a", f"fmtp:{pt} {v}") for pt, v in m.fmtp.items())
        if m.ptime is not None:
            section.append(("a", f"ptime:{m.ptime}"))
        section.append(("a", m.direction))
        section.extend(("a", a) for a in m.attributes)
        out.extend(f"{k}={v}" for k, v in _ordered(section, _MEDIA_ORDER))
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


@dataclass(frozen=True, slots=True, kw_only=True)
class SdpAnswer:
    description: SessionDescription
    codec: Codec  # with the offerer's payload type number
    telephone_event_pt: int | None
    remote_address: str
    remote_port: int
    direction: str  # ours, as written in the answer


def _addr_type(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _codec_name(m: MediaDescription, pt: int) -> tuple[str, int] | None:
    mapping = m.rtpmap.get(pt)
    if mapping is None:
        return _STATIC.get(pt)
    name, _, rest = mapping.partition("/")
    rate = rest.partition("/")[0]
    if not rate.isascii() or not rate.isdigit() or len(rate) > 9:
        return None
    return name, int(rate)


def _choose(m: MediaDescription, supported: Sequence[Codec]) -> tuple[Codec, int | None] | None:
    codec: Codec | None = None
    event_pt: int | None = None
    for pt in m.formats:  # offerer's preference order (RFC 3264 §6.1)
        named = _codec_name(m, pt)
        if named is None:
            continue
        name, rate = named
        if name.lower() == "telephone-event" and rate == 8000:
            event_pt = pt if event_pt is None else event_pt
            continue
        if codec is None:
            for ours in supported:
                if ours.name.lower() == name.lower() and ours.clock_rate == rate:
                    codec = Codec(pt, ours.name, ours.clock_rate)
                    break
    return None if codec is None else (codec, event_pt)


def _rejected(m: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a refused stream keeps its m= line, with port 0 and the offer's formats.
    return MediaDescription(media=m.media, port=0, proto=m.proto, formats=m.formats,
                            format_tokens=m.format_tokens, direction="inactive")


def answer_offer(
    offer: SessionDescription,
    *,
    local_address: str,
    local_port: int,
    session_id: int,
    session_version: int,
    supported: Sequence[Codec] = (PCMU, PCMA),
) -> SdpAnswer | None:
    """Answer one audio stream of `offer`; None when no audio codec is common (488).

    Raises SdpError when the accepted stream has no connection address at all.
    """
    answered: list[MediaDescription] = []
    chosen: tuple[Codec, int | None, MediaDescription] | None = None
    for m in offer.media:
        pick = None
        if chosen is None and m.media == "audio" and m.proto == "RTP/AVP" and m.port != 0:
            pick = _choose(m, supported)
        if pick is None:
            answered.append(_rejected(m))
            continue
        codec, event_pt = pick
        chosen = (codec, event_pt, m)
        formats = (codec.payload_type,) if event_pt is None else (codec.payload_type, event_pt)
        rtpmap = {codec.payload_type: codec.rtpmap}
        fmtp: dict[int, str] = {}
        if event_pt is not None:
            rtpmap[event_pt] = "telephone-event/8000"
            fmtp[event_pt] = "0-16"
        answered.append(MediaDescription(
            media="audio", port=local_port, proto="RTP/AVP", formats=formats, rtpmap=rtpmap,
            fmtp=fmtp, ptime=20, direction=_ANSWER_DIRECTION.get(m.direction, "sendrecv"),
        ))
    if chosen is None:
        return None
    codec, event_pt, m = chosen
    remote = m.connection or offer.connection
    if remote is None:
        raise SdpError("offer has no c= line for its audio stream")
    times = tuple(kv for kv in offer.other_lines if kv[0] == "t") or (("t", "0 0"),)
    description = SessionDescription(
        origin=Origin(session_id=session_id, session_version=session_version,
                      addr_type=_addr_type(local_address), address=local_address),
        connection=Connection(addr_type=_addr_type(local_address), address=local_address),
        media=tuple(answered),
        other_lines=times,
    )
    return SdpAnswer(
        description=description, codec=codec, telephone_event_pt=event_pt,
        remote_address=remote.address, remote_port=m.port,
        direction=_ANSWER_DIRECTION.get(m.direction, "sendrecv"),
    )


def make_offer(
    *,
    local_address: str,
    local_port: int,
    session_id: int,
    session_version: int,
    codecs: Sequence[Codec] = (PCMU, PCMA),
    telephone_event_pt: int | None = 101,
    direction: str = "sendrecv",
) -> SessionDescription:
    """Our offer (for an INVITE that came without one, or one we send)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}")
    formats = [c.payload_type for c in codecs]
    rtpmap = {c.payload_type: c.rtpmap for c in codecs}
    fmtp: dict[int, str] = {}
    if telephone_event_pt is not None:
        formats.append(telephone_event_pt)
        rtpmap[telephone_event_pt] = "telephone-event/8000"
        fmtp[telephone_event_pt] = "0-16"
    addr_type = _addr_type(local_address)
    return SessionDescription(
        origin=Origin(session_id=session_id, session_version=session_version,
                      addr_type=addr_type, address=local_address),
        connection=Connection(addr_type=addr_type, address=local_address),
        media=(MediaDescription(
            media="audio", port=local_port, proto="RTP/AVP", formats=tuple(formats),
            rtpmap=rtpmap, fmtp=fmtp, ptime=20, direction=direction,
        ),),
        other_lines=(("t", "0 0"),),
    )
