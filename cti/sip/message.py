"""SIP requests and responses: datagram bytes to typed messages and back.

Owns message framing (start line, header lines, folding, Content-Length), the
sanity limits on the scalars the transaction layer relies on, serialization, and
building responses that echo a request (RFC 3261 §8.2.6). Must never keep state,
do I/O or read a clock; randomness for tags, branches and Call-IDs comes from
`secrets`. Semantic checks of a parsed request live in `validation`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from cti.sip._grammar import LWS, is_token
from cti.sip.errors import SipParseError
from cti.sip.headers import Headers
from cti.sip.status import reason_phrase
from cti.sip.uri import NameAddr, Via, parse_name_addr, parse_via

__all__ = [
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "build_error_response",
    "build_response",
    "is_keepalive",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
    "response_for_parse_error",
    "serialize",
]

MAGIC_COOKIE = "z9hG4bK"
MAX_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31
MAX_FORWARDS = 255
MAX_DELTA_SECONDS = 2**32 - 1
MAX_HEADER_LINES = 1000  # a 64 KiB datagram of empty headers must not cost us much

_CSEQ = re.compile(r"([0-9]+)[ \t]+([^ \t]+)")
_DIGITS = re.compile(r"[0-9]{1,20}")
_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)
_STATUS_LINE = re.compile(r"(SIP/[0-9]+\.[0-9]+) ([0-9]{3})(?: (.*))?", re.I | re.S)
_REQUEST_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[\x21-\x7e]+")


class _Accessors:
    """Typed views of the headers every transaction needs; each raises SipParseError."""

    __slots__ = ()
    headers: Headers

    def _single(self, name: str) -> str:
        lines = self.headers.get_lines(name)
        if not lines:
            raise SipParseError(f"missing {name}")
        if len(lines) > 1:
            raise SipParseError(f"several {name} headers")
        return lines[0]

    @property
    def call_id(self) -> str:
        value = self._single("Call-ID")
        if not value or any(ch in LWS for ch in value):
            raise SipParseError("malformed Call-ID")
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        match = _CSEQ.fullmatch(self._single("CSeq"))
        if not match or not is_token(match.group(2)):
            raise SipParseError("malformed CSeq")
        digits = match.group(1)
        if len(digits) > 10 or int(digits) > MAX_CSEQ:
            raise SipParseError("CSeq number too large")
        return int(digits), match.group(2)

    @property
    def vias(self) -> list[Via]:
        values = self.headers.get_all("Via")
        if not values:
            raise SipParseError("missing Via")
        return [parse_via(v) for v in values]

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise SipParseError("missing Via")
        return parse_via(values[0])

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self._single("From"))

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self._single("To"))


@dataclass(slots=True, kw_only=True)
class SipRequest(_Accessors):
    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"


@dataclass(slots=True, kw_only=True)
class SipResponse(_Accessors):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"


def is_keepalive(data: bytes) -> bool:
    """A datagram of CRLFs only (RFC 5626 keep-alive): not a message, never answered."""
    return not data.strip(b"\r\n")


def _split_head(data: bytes, pos: int) -> tuple[list[bytes], int | None]:
    """Lines of the head (CRLF or bare LF), and where the body starts (None: no blank line)."""
    lines: list[bytes] = []
    n = len(data)
    while pos < n:
        nl = data.find(b"\n", pos)
        end = n if nl < 0 else nl
        line = data[pos:end]
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return lines, end + 1
        lines.append(line)
        if len(lines) > MAX_HEADER_LINES:
            raise SipParseError("too many header lines", status=None)
        if nl < 0:
            break
        pos = nl + 1
    return lines, None


class _Parse:
    """Accumulates the first problem while reading on, so a partial request is complete."""

    def __init__(self) -> None:
        self.problem: str | None = None
        self.status: int | None = 400

    def fail(self, reason: str, status: int | None = 400) -> None:
        if self.problem is None:
            self.problem, self.status = reason, status


def _decode_lines(raw: list[bytes], state: _Parse) -> list[str]:
    lines: list[str] = []
    for line in raw:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            state.fail("header section is not UTF-8")
            text = line.decode("utf-8", "replace")
        if "\r" in text:
            state.fail("bare CR in message head")
            text = text.replace("\r", " ")
        lines.append(text)
    return lines


def _parse_headers(lines: list[str], state: _Parse) -> Headers:
    unfolded: list[str] = []
    for line in lines:
        if line[0] in LWS:
            # RFC 3261 §7.3.1: a continuation line and the CRLF before it are one SP.
            if not unfolded:
                state.fail("continuation line before the first header")
                continue
            rest = line.strip(LWS)
            if rest:
                unfolded[-1] = unfolded[-1].rstrip(LWS) + " " + rest
        else:
            unfolded.append(line)
    headers = Headers()
    for line in unfolded:
        name, colon, value = line.partition(":")
        name = name.rstrip(LWS)
        if not colon or not is_token(name):
            state.fail("malformed header line")
            continue
        headers._add_parsed(name, value.strip(LWS))  # a token name; lines hold no CR/LF
    return headers


def _check_number(headers: Headers, name: str, limit: int, state: _Parse) -> None:
    for value in headers.get_lines(name):
        if not _DIGITS.fullmatch(value) or int(value) > limit:
            state.fail(f"invalid or overlarge {name}")


def _check_scalars(headers: Headers, state: _Parse) -> None:
    for value in headers.get_lines("CSeq"):
        match = _CSEQ.fullmatch(value)
        # Only the size is judged here; a malformed CSeq is validation's 400, and
        # response_for_parse_error can still echo an overlarge one.
        if match and (len(match.group(1)) > 10 or int(match.group(1)) > MAX_CSEQ):
            state.fail("CSeq number too large")
    _check_number(headers, "Max-Forwards", MAX_FORWARDS, state)
    _check_number(headers, "Expires", MAX_DELTA_SECONDS, state)


def _body(
    data: bytes, body_start: int | None, headers: Headers, state: _Parse
) -> bytes:
    available = b"" if body_start is None else data[body_start:]
    lengths = headers.get_lines("Content-Length")
    if not lengths:
        return available  # RFC 3261 §18.3: over UDP the body runs to the datagram's end
    if len(lengths) > 1:
        state.fail("several Content-Length headers")
        return b""
    if not _DIGITS.fullmatch(lengths[0]):
        state.fail("invalid Content-Length")
        return b""
    length = int(lengths[0])
    if length > len(available):
        state.fail("Content-Length larger than the datagram")
        return b""
    return available[:length]  # bytes after the body are not ours (RFC 4475 dblreq)


def _request_line(line: str, state: _Parse) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        state.fail("request line is not 'Method SP Request-URI SP SIP-Version'")
        words = line.split()
        return (words[0] if words else ""), (words[1] if len(words) > 2 else ""), "SIP/2.0"
    method, uri, version = parts
    if not is_token(method):
        state.fail("invalid method")
    if not _REQUEST_URI.fullmatch(uri):
        state.fail("invalid Request-URI")
    if not _VERSION.fullmatch(version):
        state.fail("invalid SIP version")
    elif version.upper() != "SIP/2.0":
        state.fail("SIP version not supported", 505)
    return method, uri, "SIP/2.0"


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one datagram into a message, or raise SipParseError (and nothing else)."""
    data = bytes(data)
    pos = 0
    while pos < len(data) and data[pos] in b"\r\n":
        pos += 1  # RFC 3261 §7.5: CRLFs before the start line are ignored
    if pos == len(data):
        raise SipParseError("empty datagram", status=None)
    raw_lines, body_start = _split_head(data, pos)
    state = _Parse()
    lines = _decode_lines(raw_lines, state)
    start = lines[0]
    is_response = start[:4].upper() == "SIP/"
    if not is_response and not re.search(r" SIP/[0-9]+\.[0-9]+[ \t]*$", start, re.I):
        raise SipParseError("not a SIP message", status=None)
    if is_response:
        state.status = None
    request_line = None if is_response else _request_line(start, state)
    headers = _parse_headers(lines[1:], state)
    body = _body(data, body_start, headers, state)
    _check_scalars(headers, state)
    if request_line is not None:
        method, uri, version = request_line
        request = SipRequest(method=method, uri=uri, headers=headers, body=body, version=version)
        if state.problem is not None:
            request.body = b""
            raise SipParseError(state.problem, status=state.status, partial=request)
        return request
    match = _STATUS_LINE.fullmatch(start)
    if state.problem is not None:
        raise SipParseError(state.problem, status=None)
    if not match:
        raise SipParseError("malformed status line", status=None)
    version, code, reason = match.groups()
    if version.upper() != "SIP/2.0":
        raise SipParseError("SIP version not supported", status=None)
    if not 100 <= int(code) <= 699:
        raise SipParseError("status code out of range", status=None)
    return SipResponse(
        status=int(code), reason=reason or "", headers=headers, body=body, version="SIP/2.0"
    )


def serialize(message: SipRequest | SipResponse) -> bytes:
    """Wire bytes with CRLF line ends and a Content-Length that matches the body."""
    headers = message.headers.copy()
    headers.set("Content-Length", str(len(message.body)))
    if isinstance(message, SipRequest):
        if not is_token(message.method) or any(ch in message.uri for ch in " \r\n"):
            raise ValueError("invalid method or Request-URI")
        start = f"{message.method} {message.uri} {message.version}"
    else:
        if "\r" in message.reason or "\n" in message.reason:
            raise ValueError("CR/LF in reason phrase")
        start = f"{message.version} {message.status:03d} {message.reason}"
    lines = [start, *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + message.body


def new_tag() -> str:
    return secrets.token_hex(8)


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(12)


def new_call_id(host: str) -> str:
    token = secrets.token_hex(16)
    return f"{token}@{host}" if host else token


def _with_tag(to_value: str, to_tag: str | None) -> str:
    if to_tag is None:
        return to_value
    try:
        if parse_name_addr(to_value).tag is not None:
            return to_value
    except SipParseError:
        return to_value  # echo what we could not read rather than make it worse
    return f"{to_value.rstrip(LWS)};tag={to_tag}"


def build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response echoing Via, From, To, Call-ID and CSeq (RFC 3261 §8.2.6.2).

    Values are copied as received, so a header we cannot parse is echoed rather than
    dropped. Record-Route for dialog-creating responses is the caller's to add.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} outside 100..699")
    src = request.headers
    out = Headers()
    for value in src.get_lines("Via"):
        out.add("Via", value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        echoed = src.get(name)
        if echoed is not None:
            out.add(name, _with_tag(echoed, to_tag) if name == "To" else echoed)
    for name, value in headers:
        out.add(name, value)
    if content_type is not None:
        out.set("Content-Type", content_type)
    return SipResponse(
        status=status,
        reason=reason_phrase(status) if reason is None else reason,
        headers=out,
        body=body,
    )


def build_error_response(
    request: SipRequest,
    status: int,
    hint: str | None = None,
    *,
    headers: Iterable[tuple[str, str]] = (),
) -> SipResponse:
    """A final response rejecting `request`, with a fresh To tag (RFC 3261 §8.2.6.2).

    The hint goes into the reason phrase, which is the one place a peer's log shows.
    """
    reason = reason_phrase(status)
    if hint:
        clean = "".join(ch if " " <= ch <= "~" else "?" for ch in hint[:80])
        reason = f"{reason} ({clean})"
    return build_response(request, status, reason, to_tag=new_tag(), headers=headers)


def _usable_for_response(request: SipRequest) -> bool:
    h = request.headers
    if request.method == "ACK" or any(h.count(n) != 1 for n in ("From", "To", "Call-ID", "CSeq")):
        return False
    cseq = _CSEQ.fullmatch(h.get("CSeq") or "")
    if not cseq or cseq.group(2) == "ACK":
        return False  # an ACK never gets a response, however broken
    try:
        request.top_via
    except SipParseError:
        return False
    return True


def response_for_parse_error(err: SipParseError) -> SipResponse | None:
    """The response to send for a request that failed to parse, or None to drop it."""
    if err.status is None or err.partial is None or not _usable_for_response(err.partial):
        return None
    return build_error_response(err.partial, err.status, err.reason)
