"""Framing SIP messages out of a byte stream (RFC 3261 §18.3, RFC 5626 §3.5.1), sans I/O.

Owns: cutting one connection's bytes into whole messages (the head up to its blank
line, then exactly Content-Length bytes of body), the CRLFCRLF keep-alive ping and its
CRLF pong, skipping CRLFs between messages, and the size limit that stops a peer from
making us buffer without end. A stream that cannot be framed (no Content-Length, an
unreadable one, too many bytes) puts the framer in a final ERROR state: the adapter
sends the 400 it is handed, if any, and closes the connection.
Must never: touch a socket or a clock, or judge a framed message beyond its framing;
`parse_message` and the transaction layer do that, exactly as for a UDP datagram.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from cti.sip._grammar import LWS
from cti.sip.errors import SipParseError
from cti.sip.message import SipRequest, parse_message, response_for_parse_error, serialize

MAX_MESSAGE = 64 * 1024  # a SIP message on a stream beyond this is garbage or an attack

PING = b"\r\n\r\n"
PONG = b"\r\n"

_HEAD_END = re.compile(rb"\n\r?\n")  # bare LF is tolerated, as parse_message does
_DIGITS = re.compile(r"[0-9]{1,10}")


# --- what the adapter must do ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageFramed:
    """One whole message: hand it to the transaction layer."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SendBytes:
    """Write these bytes on the connection (a keep-alive pong, or a 400 before closing)."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseConnection:
    reason: str


FramerOutput = MessageFramed | SendBytes | CloseConnection


class FramerState(enum.Enum):
    BETWEEN = "between"  # at a message boundary: CRLFs and pings may come
    HEAD = "head"  # inside a message head, waiting for its blank line
    BODY = "body"  # head read, waiting for Content-Length bytes
    ERROR = "error"  # the stream cannot be framed; nothing more is read


# Legal state changes: one table, checked on every change.
_TRANSITIONS: dict[FramerState, frozenset[FramerState]] = {
    FramerState.BETWEEN: frozenset({FramerState.HEAD}),
    FramerState.HEAD: frozenset({FramerState.BODY, FramerState.ERROR}),
    FramerState.BODY: frozenset({FramerState.BETWEEN}),
    FramerState.ERROR: frozenset(),
}


class StreamFramer:
    """The framing state of one connection. Feed it bytes, act on what it returns."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self.state = FramerState.BETWEEN
        self._buffer = bytearray()
        self._head_end = 0  # where the body starts, once the head is complete
        self._length = 0  # Content-Length of the message being read

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[FramerOutput]:
        if self.state == FramerState.ERROR:
            return []
        self._buffer += data
        out: list[FramerOutput] = []
        while self.state != FramerState.ERROR and self._step(out):
            pass
        return out

    # Each step consumes what the bytes seen so far decide, and returns False when the
    # decision needs bytes not yet seen; so any split of a stream frames the same way.
    def _move(self, new: FramerState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"stream framer: {self.state.value} -> {new.value} is not allowed")
        self.state = new

    def _step(self, out: list[FramerOutput]) -> bool:
        if self.state == FramerState.BETWEEN:
            return self._between(out)
        if self.state == FramerState.HEAD:
            return self._head(out)
        return self._body(out)

    def _between(self, out: list[FramerOutput]) -> bool:
        buf = self._buffer
        if not buf:
            return False
        if buf[:4] == PING:
            del buf[:4]
            out.append(SendBytes(data=PONG))
            return True
        if buf[0:1] == b"\r":
            if PING.startswith(bytes(buf[:4])):
                return False  # a ping, or a lone CRLF before a message: wait and see
            del buf[: 2 if buf[1:2] == b"\n" else 1]  # §7.5: CRLFs before a start line
            return True
        if buf[0:1] == b"\n":
            del buf[:1]
            return True
        self._move(FramerState.HEAD)
        return True

    def _head(self, out: list[FramerOutput]) -> bool:
        match = _HEAD_END.search(self._buffer)
        if match is None:
            if len(self._buffer) > self.max_message:
                self._fail(out, "message head larger than the limit", reply=False)
            return False
        self._head_end = match.end()
        if self._head_end > self.max_message:
            self._fail(out, "message head larger than the limit", reply=False)
            return False
        head = bytes(self._buffer[: self._head_end])
        length, problem = _content_length(head)
        if problem is not None:
            self._fail(out, problem, reply=True)
            return False
        if self._head_end + length > self.max_message:
            self._fail(out, "message larger than the limit", reply=False)
            return False
        self._length = length
        self._move(FramerState.BODY)
        return True

    def _body(self, out: list[FramerOutput]) -> bool:
        end = self._head_end + self._length
        if len(self._buffer) < end:
            return False
        out.append(MessageFramed(data=bytes(self._buffer[:end])))
        del self._buffer[:end]
        self._move(FramerState.BETWEEN)
        return True

    def _fail(self, out: list[FramerOutput], reason: str, *, reply: bool) -> None:
        if reply:
            response = _error_response(bytes(self._buffer[: self._head_end]), reason)
            if response is not None:
                out.append(SendBytes(data=response))
        out.append(CloseConnection(reason=reason))
        self._move(FramerState.ERROR)
        self._buffer.clear()


def _content_length(head: bytes) -> tuple[int, str | None]:
    """The head's Content-Length (or compact `l`), or why the stream cannot be framed."""
    values: list[str] = []
    current: str | None = None
    for raw in head.split(b"\n")[1:]:
        line = raw.rstrip(b"\r").decode("utf-8", "replace")
        if line and line[0] in LWS and current is not None:
            current += " " + line.strip(LWS)  # §7.3.1: a folded header value
            continue
        if current is not None:
            values.append(current)
            current = None
        name, colon, value = line.partition(":")
        if colon and name.rstrip(LWS).lower() in ("content-length", "l"):
            current = value.strip(LWS)
    if current is not None:
        values.append(current)
    if not values:
        return 0, "missing Content-Length (mandatory on stream transports)"
    if len(set(values)) > 1:
        return 0, "several Content-Length headers"
    if not _DIGITS.fullmatch(values[0]):
        return 0, "invalid Content-Length"
    return int(values[0]), None


def _error_response(head: bytes, reason: str) -> bytes | None:
    """A 400 for a request whose head is usable enough to answer (§8.2.6), else None."""
    try:
        message: SipRequest | object = parse_message(head)
    except SipParseError as err:
        message = err.partial
    if not isinstance(message, SipRequest):
        return None  # garbage, or a response: a response is never answered
    response = response_for_parse_error(SipParseError(reason, status=400, partial=message))
    return serialize(response) if response is not None else None
