"""Playbook and property tests of the stream framer: bytes in, framed messages, pongs and
closes out. No sockets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cti.sip.framing import (
    MAX_MESSAGE,
    PONG,
    CloseConnection,
    FramerOutput,
    FramerState,
    MessageFramed,
    SendBytes,
    StreamFramer,
)
from cti.sip.message import SipResponse, parse_message


def request(method: str = "OPTIONS", *, body: str = "", length: str | None = None, call_id: str = "c1@h") -> bytes:
    lines = [
        f"{method} sip:1000@192.0.2.1 SIP/2.0",
        "Via: SIP/2.0/TCP 192.0.2.10:5062;branch=z9hG4bKaaa",
        "Max-Forwards: 70",
        "From: <sip:alice@192.0.2.10>;tag=from1",
        "To: <sip:1000@192.0.2.1>",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
    ]
    if length != "":
        lines.append(f"Content-Length: {len(body.encode()) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


INVITE = request("INVITE", body="v=0\r\no=x 1 1 IN IP4 192.0.2.10\r\ns=-\r\n\r\n\r\nc=IN IP4 192.0.2.10\r\n", call_id="c2@h")
RESPONSE = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
    b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nl: 4\r\n\r\nbody"
)


def feed_all(chunks: list[bytes], max_message: int = MAX_MESSAGE) -> list[FramerOutput]:
    framer = StreamFramer(max_message)
    out: list[FramerOutput] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def framed(outputs: list[FramerOutput]) -> list[bytes]:
    return [o.data for o in outputs if isinstance(o, MessageFramed)]


def test_one_message_in_one_chunk() -> None:
    assert feed_all([request()]) == [MessageFramed(data=request())]


def test_two_messages_in_one_chunk_and_a_body_holding_a_blank_line() -> None:
    out = feed_all([request() + INVITE])
    assert framed(out) == [request(), INVITE]  # the SDP's blank line does not end the INVITE
    assert parse_message(framed(out)[1]).body.endswith(b"c=IN IP4 192.0.2.10\r\n")


def test_compact_content_length_and_a_response() -> None:
    assert framed(feed_all([RESPONSE])) == [RESPONSE]


def test_every_two_way_split_frames_the_same() -> None:
    stream = b"\r\n" + request() + b"\r\n\r\n" + INVITE + RESPONSE
    whole = feed_all([stream])
    assert framed(whole) == [request(), INVITE, RESPONSE] and SendBytes(data=PONG) in whole
    for cut in range(len(stream) + 1):
        assert feed_all([stream[:cut], stream[cut:]]) == whole, cut


def test_byte_by_byte_frames_the_same() -> None:
    stream = request() + b"\r\n\r\n" + INVITE
    assert feed_all([bytes([b]) for b in stream]) == feed_all([stream])


PIECES = st.sampled_from([request(), INVITE, RESPONSE, b"\r\n", b"\r\n\r\n", b"\n"])


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECES, max_size=6), st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_any_split_of_any_stream_frames_the_same(pieces: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(pieces)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    assert feed_all(chunks) == feed_all([stream])
    expected = [p for p in pieces if p not in (b"\r\n", b"\r\n\r\n", b"\n")]
    assert framed(feed_all(chunks)) == expected


def test_keepalive_ping_gets_a_pong_and_a_lone_crlf_is_skipped() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [SendBytes(data=PONG)]
    assert framer.feed(b"\r\n") == []  # maybe the start of a ping: wait
    assert framer.feed(request()) == [MessageFramed(data=request())]
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == [SendBytes(data=PONG), SendBytes(data=PONG)]
    assert framer.buffered == 0


def test_missing_content_length_gets_a_400_and_a_close() -> None:
    out = feed_all([request(length="")])
    assert len(out) == 2 and isinstance(out[0], SendBytes) and isinstance(out[1], CloseConnection)
    answer = parse_message(out[0].data)
    assert isinstance(answer, SipResponse) and answer.status == 400
    assert answer.call_id == "c1@h" and "Content-Length" in answer.reason


def test_invalid_or_conflicting_content_length_gets_a_400() -> None:
    for head in (request(length="abc"), request().replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 7")):
        out = feed_all([head])
        assert [type(o) for o in out] == [SendBytes, CloseConnection], head
        assert parse_message(out[0].data).status == 400  # type: ignore[union-attr]


def test_a_response_without_content_length_is_closed_silently() -> None:
    out = feed_all([RESPONSE.replace(b"l: 4\r\n", b"")])
    assert [type(o) for o in out] == [CloseConnection]


def test_garbage_without_a_head_end_is_closed_at_the_limit() -> None:
    framer = StreamFramer(max_message=1024)
    assert framer.feed(b"\x00garbage" * 100) == []
    out = framer.feed(b"x" * 300)
    assert [type(o) for o in out] == [CloseConnection]
    assert framer.state == FramerState.ERROR and framer.buffered == 0
    assert framer.feed(request()) == []  # nothing more is read after an error


def test_an_overlarge_content_length_is_closed_before_the_body_arrives() -> None:
    out = feed_all([request(length="100000")])
    assert [type(o) for o in out] == [CloseConnection]


def test_garbage_head_is_closed_without_an_answer() -> None:
    out = feed_all([b"\x00\x01 hello\r\n\r\n"])
    assert [type(o) for o in out] == [CloseConnection]
