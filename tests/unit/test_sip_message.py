"""Message framing, headers, serialization and response building."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import missing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.sip.errors import SipParseError
from cti.sip.sdp import SdpError, parse_sdp
from cti.sip.validation import check_request
from cti.sip.headers import Headers
from cti.sip.message import (
    SipRequest,
    SipResponse,
    build_response,
    is_keepalive,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    response_for_parse_error,
    serialize,
)

TORTURE_DIR = Path(
    os.environ.get(
        "CTIHUB_SIP_TORTURE_DIR",
        Path(__file__).resolve().parents[2].parent / "shared" / "sip-torture",
    )
)
TORTURE = (
    {p.name: p.read_bytes() for p in sorted(TORTURE_DIR.glob("*.dat"))}
    if TORTURE_DIR.is_dir()
    else {}
)

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:bob@example.com>\r\n'
    b'From: "Alice, A." <sip:alice@example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def parse_request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def parse_error(data: bytes) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    return info.value


# --- parsing -------------------------------------------------------------------


def test_parse_invite() -> None:
    request = parse_request(INVITE)
    assert (request.method, request.uri, request.version) == (
        "INVITE",
        "sip:bob@example.com",
        "SIP/2.0",
    )
    assert request.call_id == "a84b4c76e66710@pc33.example.com"
    assert request.cseq == (314159, "INVITE")
    assert request.top_via.branch == "z9hG4bK776asdhds"
    assert request.top_via.rport == ""
    assert request.top_via.port == 5060
    assert request.from_.display_name == "Alice, A."
    assert request.from_.tag == "1928301774"
    assert request.to.tag is None
    assert request.body == b"v=0\n"


def test_parse_response() -> None:
    response = parse_message(b"SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(response, SipResponse)
    assert (response.status, response.reason) == (180, "Ringing")
    assert response.cseq == (1, "INVITE")


def test_leading_crlf_and_bare_lf() -> None:
    data = b"\r\n\r\n" + INVITE.replace(b"\r\n", b"\n")
    request = parse_request(data)
    assert request.call_id == "a84b4c76e66710@pc33.example.com"
    assert request.body == b"v=0\n"


def test_keepalive() -> None:
    assert is_keepalive(b"\r\n\r\n")
    assert not is_keepalive(INVITE)
    assert parse_error(b"\r\n\r\n").status is None


def test_missing_content_length_takes_rest_of_datagram() -> None:
    data = INVITE.replace(b"Content-Length: 4\r\n", b"") + b"o=- 1 1 IN IP4 1.2.3.4\r\n"
    assert parse_request(data).body == b"v=0\no=- 1 1 IN IP4 1.2.3.4\r\n"


def test_content_length_shorter_than_datagram_truncates() -> None:
    assert parse_request(INVITE + b"garbage").body == b"v=0\n"


@pytest.mark.parametrize("value", [b"99", b"-1", b"4x", b"", b"1" * 30])
def test_bad_content_length(value: bytes) -> None:
    err = parse_error(INVITE.replace(b"Content-Length: 4", b"Content-Length: " + value))
    assert err.status == 400
    assert err.partial is not None and err.partial.call_id
    response = response_for_parse_error(err)
    assert response is not None and response.status == 400


def test_no_blank_line_means_no_body() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: 0"
    request = parse_request(data)
    assert request.body == b""
    assert request.headers.get("Content-Length") == "0"


def test_folding_is_unfolded() -> None:
    data = (
        b"OPTIONS sip:a@example.com SIP/2.0\r\n"
        b"Subject: first\r\n  second\r\n\tthird\r\n"
        b"cseq: 0009\r\n  OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    request = parse_request(data)
    assert request.headers.get("subject") == "first second third"
    assert request.cseq == (9, "OPTIONS")


def test_compact_forms() -> None:
    data = (
        b"OPTIONS sip:a@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"
        b"i: cid\r\nf: <sip:x@y>;tag=1\r\nt: sip:a@example.com\r\nm: <sip:x@h>\r\n"
        b"k: timer\r\nc: text/plain\r\nCSeq: 1 OPTIONS\r\nl: 2\r\n\r\nhi"
    )
    request = parse_request(data)
    names = [name for name, _ in request.headers.items()]
    assert names == [
        "Via", "Call-ID", "From", "To", "Contact", "Supported", "Content-Type", "CSeq",
        "Content-Length",
    ]
    assert request.call_id == "cid"
    assert request.body == b"hi"


def test_multiple_vias_in_one_header() -> None:
    data = INVITE.replace(
        b"Via: SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n",
        b"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, SIP/2.0/TCP p2.example.com"
        b";branch=z9hG4bK2\r\nVia: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK3\r\n",
    )
    request = parse_request(data)
    assert request.headers.count("Via") == 2
    assert [v.host for v in request.vias] == ["p1.example.com", "p2.example.com", "[2001:db8::1]"]
    assert request.vias[2].port == 5062
    assert request.top_via.transport == "UDP"


def test_contact_list_with_quoted_commas() -> None:
    headers = Headers([("Contact", '"Doe, John" <sip:j@h>;q=0.5, <sip:a,b@h2>, sip:c@h3')])
    assert headers.get_all("Contact") == ['"Doe, John" <sip:j@h>;q=0.5', "<sip:a,b@h2>", "sip:c@h3"]


@pytest.mark.parametrize(
    "line",
    [
        b"INVITE  sip:a@b SIP/2.0",
        b"INVITE sip:a@b SIP/2.0 ",
        b"INVITE sip:a@b; lr SIP/2.0",
        b"INVITE <sip:a@b> SIP/2.0",
        b"INVITE\tsip:a@b SIP/2.0",
        b"INV(ITE sip:a@b SIP/2.0",
        b"INVITE nocolon SIP/2.0",
    ],
)
def test_strict_request_line(line: bytes) -> None:
    err = parse_error(line + INVITE[INVITE.index(b"\r\n") :])
    assert err.status == 400
    assert err.partial is not None
    response = response_for_parse_error(err)
    assert response is not None and response.status == 400
    assert response.headers.get("Call-ID") == "a84b4c76e66710@pc33.example.com"


def test_version_not_supported() -> None:
    err = parse_error(INVITE.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia", 1))
    assert err.status == 505
    response = response_for_parse_error(err)
    assert response is not None and response.status == 505


@pytest.mark.parametrize("line", [b"SIP/2.0 2000 OK", b"SIP/2.0 20 OK", b"SIP/2.0 099 X",
                                  b"SIP/2.0 700 X", b"SIP/3.0 200 OK", b"SIP/2.0 abc OK"])
def test_bad_status_line_is_dropped(line: bytes) -> None:
    err = parse_error(line + b"\r\nCSeq: 1 INVITE\r\n\r\n")
    assert err.status is None and err.partial is None
    assert response_for_parse_error(err) is None


@pytest.mark.parametrize(
    "header",
    [
        b"CSeq: 2147483648 INVITE",
        b"Max-Forwards: 256",
        b"Max-Forwards: many",
        b"Expires: 4294967296",
        b"Expires: 100000000000000000000000000000000000000",
    ],
)
def test_overlarge_scalars(header: bytes) -> None:
    name = header.split(b":")[0]
    lines = [ln for ln in INVITE.split(b"\r\n") if not ln.startswith(name + b":")]
    data = b"\r\n".join(lines[:1] + [header] + lines[1:])
    assert parse_error(data).status == 400


def test_largest_cseq_is_accepted() -> None:
    request = parse_request(INVITE.replace(b"CSeq: 314159", b"CSeq: 2147483647"))
    assert request.cseq == (2147483647, "INVITE")


@pytest.mark.parametrize("data", [b"\x00\x01\x02 hello", b"INVITE sip:a@b SIP/2\r\n\r\n",
                                  b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"])
def test_garbage_is_not_a_message(data: bytes) -> None:
    err = parse_error(data)
    assert err.status is None and err.partial is None


def test_malformed_header_line_keeps_partial() -> None:
    err = parse_error(INVITE.replace(b"Max-Forwards: 70", b"Max Forwards 70"))
    assert err.status == 400
    assert err.partial is not None and err.partial.cseq == (314159, "INVITE")


def test_accessors_raise_parse_errors() -> None:
    request = SipRequest(method="OPTIONS", uri="sip:a@b", headers=Headers())
    for attribute in ("call_id", "cseq", "vias", "top_via", "from_", "to"):
        with pytest.raises(SipParseError):
            getattr(request, attribute)
    request.headers.add("CSeq", "1 OPTIONS")
    request.headers.add("CSeq", "2 OPTIONS")
    with pytest.raises(SipParseError):
        request.cseq


# --- Headers ---------------------------------------------------------------------


def test_headers_multimap() -> None:
    h = Headers()
    h.add("call-id", "x")
    h.add("WWW-AUTHENTICATE", 'Digest realm="a", nonce="b"')
    h.add("Date", "Sat, 13 Nov 2010 23:29:00 GMT")
    h.add("Allow", "INVITE, ACK")
    h.add("allow", "BYE")
    h.add("X-Custom-thing", "1")
    assert [n for n, _ in h.items()] == [
        "Call-ID", "WWW-Authenticate", "Date", "Allow", "Allow", "X-Custom-thing",
    ]
    assert h.get("CALL-ID") == "x" and h.get("i") == "x"
    assert h.get_all("allow") == ["INVITE", "ACK", "BYE"]
    assert h.count("Allow") == 2
    assert h.get_all("WWW-Authenticate") == ['Digest realm="a", nonce="b"']
    assert h.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert "x-custom-THING" in h and "Route" not in h
    assert h.get("Route") is None and h.get_all("Route") == []


def test_headers_set_remove_copy() -> None:
    h = Headers([("Via", "a"), ("To", "b"), ("Via", "c"), ("From", "d")])
    h.set("via", "z")
    assert h.items() == [("Via", "z"), ("To", "b"), ("From", "d")]
    h.set("Subject", "new")
    assert h.items()[-1] == ("Subject", "new")
    clone = h.copy()
    clone.remove("to")
    assert "To" in h and "To" not in clone
    assert h != clone and h == h.copy()


@pytest.mark.parametrize("name,value", [("Bad Name", "v"), ("", "v"), ("X", "a\r\nInjected: 1")])
def test_headers_refuse_injection(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Headers().add(name, value)


# --- serialization and responses -------------------------------------------------


def test_serialize_sets_content_length() -> None:
    request = parse_request(INVITE)
    request.body = b"v=0\r\no=x\r\n"
    data = serialize(request)
    assert b"\r\nContent-Length: 10\r\n" in data
    assert data.count(b"Content-Length") == 1
    assert parse_request(data).body == b"v=0\r\no=x\r\n"


def test_round_trip_invite() -> None:
    request = parse_request(INVITE)
    assert parse_message(serialize(request)) == request


@pytest.mark.parametrize("name", sorted(TORTURE))
def test_round_trip_torture(name: str) -> None:
    try:
        message = parse_message(TORTURE[name])
    except SipParseError:
        return
    data = serialize(message)
    again = parse_message(data)
    assert serialize(again) == data
    assert again.body == message.body
    assert [(n, v) for n, v in again.headers.items() if n != "Content-Length"] == [
        (n, v) for n, v in message.headers.items() if n != "Content-Length"
    ]


def test_build_response_copies_dialog_headers() -> None:
    request = parse_request(
        INVITE.replace(b"Max-Forwards", b"Via: SIP/2.0/UDP second.example.com;branch=z9hG4bK2\r\nMax-Forwards")
    )
    response = build_response(request, 180, to_tag="abc")
    assert response.reason == "Ringing"
    assert [v.host for v in response.vias] == ["pc33.example.com", "second.example.com"]
    assert response.to.tag == "abc"
    assert response.from_ == request.from_
    assert response.call_id == request.call_id
    assert response.cseq == request.cseq
    assert parse_message(serialize(response)) == parse_message(serialize(response))


def test_build_response_keeps_existing_to_tag_and_body() -> None:
    request = parse_request(INVITE.replace(b'<sip:bob@example.com>\r\n', b"<sip:bob@example.com>;tag=old\r\n"))
    response = build_response(
        request, 200, to_tag="new", headers=[("Contact", "<sip:hub@10.0.0.1>")],
        body=b"v=0\r\n", content_type="application/sdp",
    )
    assert response.to.tag == "old"
    assert response.headers.get("Content-Type") == "application/sdp"
    assert response.headers.get("Contact") == "<sip:hub@10.0.0.1>"
    wire = parse_message(serialize(response))
    assert isinstance(wire, SipResponse) and wire.body == b"v=0\r\n" and wire.status == 200


@pytest.mark.parametrize(
    "status,reason",
    [(100, "Trying"), (415, "Unsupported Media Type"), (420, "Bad Extension"),
     (421, "Extension Required"), (416, "Unsupported URI Scheme"), (488, "Not Acceptable Here"),
     (489, "Bad Event"), (491, "Request Pending"), (493, "Undecipherable"),
     (501, "Not Implemented"), (503, "Service Unavailable"), (505, "Version Not Supported"),
     (603, "Decline")],
)
def test_reason_phrases(status: int, reason: str) -> None:
    assert build_response(parse_request(INVITE), status).reason == reason


def test_build_response_rejects_bad_status() -> None:
    with pytest.raises(ValueError):
        build_response(parse_request(INVITE), 99)


def test_addr_spec_to_gets_header_tag() -> None:
    request = parse_request(INVITE.replace(b'To: "Bob" <sip:bob@example.com>', b"To: sip:bob@example.com"))
    response = build_response(request, 486, to_tag="t1")
    assert response.headers.get("To") == "sip:bob@example.com;tag=t1"
    assert response.to.tag == "t1"


@pytest.mark.parametrize(
    "drop", [b"Via: ", b"From: ", b"To: ", b"Call-ID: ", b"CSeq: "]
)
def test_no_response_without_usable_headers(drop: bytes) -> None:
    lines = [ln for ln in INVITE.split(b"\r\n") if not ln.startswith(drop)]
    data = b"\r\n".join(lines).replace(b"INVITE sip:bob@example.com SIP/2.0", b"INVITE  sip:bob@example.com SIP/2.0")
    err = parse_error(data)
    assert err.status == 400
    assert response_for_parse_error(err) is None


def test_no_response_to_a_bad_ack() -> None:
    data = INVITE.replace(b"INVITE sip:bob@example.com SIP/2.0", b"ACK  sip:bob@example.com SIP/2.0")
    data = data.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 ACK")
    assert response_for_parse_error(parse_error(data)) is None


def test_identifiers() -> None:
    assert new_branch().startswith("z9hG4bK") and new_branch() != new_branch()
    assert new_tag() != new_tag()
    call_id = new_call_id("hub.example.com")
    assert call_id.endswith("@hub.example.com") and "@" not in new_call_id("")


# --- robustness (property-based) -------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _survives(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as err:
        response = response_for_parse_error(err)
        if response is not None:
            serialize(response)  # it may echo an overlarge CSeq, so no reparse
        return
    reparsed = parse_message(serialize(message))
    assert reparsed.body == message.body
    if isinstance(message, SipRequest):
        response = check_request(message, allowed_methods=frozenset({"INVITE", "OPTIONS"}))
        if response is not None:
            serialize(response)
    try:
        parse_sdp(message.body)
    except SdpError:
        pass


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_only_raise_parse_errors(data: bytes) -> None:
    _survives(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_after_a_start_line(data: bytes) -> None:
    _survives(b"INVITE sip:a@b SIP/2.0\r\n" + data)
    _survives(b"SIP/2.0 200 OK\r\n" + data)


def test_torture_files_are_there() -> None:
    if not TORTURE:
        missing(f"the RFC 4475 torture folder {TORTURE_DIR} (set CTIHUB_SIP_TORTURE_DIR)")


@pytest.mark.skipif(not TORTURE, reason="no torture files (test_torture_files_are_there says why)")
@FUZZ
@given(st.data())
def test_mutated_torture_only_raise_parse_errors(data: st.DataObject) -> None:
    original = bytearray(TORTURE[data.draw(st.sampled_from(sorted(TORTURE)))])
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, max(0, len(original) - 1)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip" and original:
            original[position] = data.draw(st.integers(0, 255))
        elif action == "insert":
            original[position:position] = data.draw(
                st.sampled_from([b"\r\n", b" ", b";", b",", b'"', b"<", b">", b":", b"%", b"\x00"])
            )
        elif original:
            del original[position : position + data.draw(st.integers(1, 20))]
    _survives(bytes(original))


@pytest.mark.parametrize("name", sorted(TORTURE))
def test_truncated_torture_only_raise_parse_errors(name: str) -> None:
    original = TORTURE[name]
    for cut in range(0, len(original), max(1, len(original) // 60)):
        _survives(original[:cut])


_TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
                 min_size=1, max_size=12)
_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, blacklist_characters="\x7f"),
                 max_size=30).map(lambda s: s.strip(" \t"))


@settings(max_examples=200, deadline=None)
@given(
    method=_TOKEN,
    headers=st.lists(st.tuples(_TOKEN, _VALUE), max_size=8),
    body=st.binary(max_size=100),
)
def test_generated_requests_round_trip(
    method: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    h = Headers([(n, v) for n, v in headers if n.lower() not in ("content-length", "l")])
    request = SipRequest(method=method, uri="sip:u@example.com", headers=h, body=body)
    parsed = parse_message(serialize(request))
    assert isinstance(parsed, SipRequest)
    assert parsed.method == method and parsed.body == body
    assert [(n.lower(), v) for n, v in parsed.headers.items()][:-1] == [
        (n.lower(), v) for n, v in h.items()
    ]


@settings(max_examples=100, deadline=None)
@given(status=st.integers(100, 699), reason=_VALUE, body=st.binary(max_size=50))
def test_generated_responses_round_trip(status: int, reason: str, body: bytes) -> None:
    response = SipResponse(status=status, reason=reason, headers=Headers([("CSeq", "1 INVITE")]), body=body)
    parsed = parse_message(serialize(response))
    assert isinstance(parsed, SipResponse)
    assert (parsed.status, parsed.reason, parsed.body) == (status, reason, body)
