"""Lexical pieces of the RFC 3261 grammar shared by the header, URI and message parsers.

Owns character classes, quoted-string handling, list splitting, generic header
parameters and %-escapes. Must never know about any particular header's meaning.
"""

from __future__ import annotations

import re
import string

from cti.sip.errors import SipParseError

LWS = " \t"  # SIP's linear white space after unfolding; str.strip() would eat \x1c-\x1f too
ALNUM = frozenset(string.ascii_letters + string.digits)
TOKEN_CHARS = ALNUM | frozenset("-.!%*_+`'~")
UNRESERVED = ALNUM | frozenset("-_.!~*'()")
# Unquoted generic-param values are tokens or hosts; hosts bring ':' and '[' ']' (IPv6).
_PARAM_VALUE_CHARS = TOKEN_CHARS | frozenset("[]:")

Params = tuple[tuple[str, str | None], ...]


_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_PARAM_VALUE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+")


def is_token(text: str) -> bool:
    # A regular expression, not a loop over the characters: every header name of every
    # message goes through here. Same set as TOKEN_CHARS.
    return _TOKEN.fullmatch(text) is not None


def read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted-string opening at `start`; return (unescaped content, end index)."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise SipParseError("unterminated quoted string")


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_outside(text: str, sep: str, *, angles: bool = True) -> list[str]:
    """Split on `sep` where it is not inside a quoted string (or <...> when `angles`).

    Never raises: an unterminated quote swallows the rest, and the element parser
    that receives it reports the error with better context.
    """
    if '"' not in text:
        return _split_unquoted(text, sep, angles=angles)
    parts: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif angles and ch == "<":
            in_angle = True
        elif angles and ch == ">":
            in_angle = False
        elif ch == sep and not in_angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _split_unquoted(text: str, sep: str, *, angles: bool) -> list[str]:
    """`split_outside` for text without a quote: str.split, then the pieces cut inside
    <...> are joined again (the common case, a Contact or Route, in a few C calls)."""
    pieces = text.split(sep)
    if not angles or len(pieces) == 1 or "<" not in text:
        return pieces
    parts: list[str] = []
    current: str | None = None
    in_angle = False
    for piece in pieces:
        current = piece if current is None else current + sep + piece
        opened, closed = piece.rfind("<"), piece.rfind(">")
        if opened > closed:
            in_angle = True
        elif closed > opened:
            in_angle = False
        if not in_angle:
            parts.append(current)
            current = None
    if current is not None:
        parts.append(current)
    return parts


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value into its elements, dropping empty ones."""
    items = (part.strip(LWS) for part in split_outside(value, ","))
    return [item for item in items if item]


def parse_params(text: str) -> Params:
    """Parse `name [= value]` pairs separated by ';' (the text after the first ';').

    Quoted values keep their quotes so that serializing gives the same bytes back.
    """
    params: list[tuple[str, str | None]] = []
    for raw in split_outside(text, ";", angles=False):
        item = raw.strip(LWS)
        if not item:
            raise SipParseError("empty parameter")
        name, eq, value = item.partition("=")
        name = name.strip(LWS)
        if not is_token(name):
            raise SipParseError(f"bad parameter name {name[:40]!r}")
        if not eq:
            params.append((name, None))
            continue
        value = value.strip(LWS)
        if value.startswith('"'):
            _, end = read_quoted(value, 0)
            if end != len(value):
                raise SipParseError(f"junk after quoted value of parameter {name!r}")
        elif _PARAM_VALUE.fullmatch(value) is None:
            raise SipParseError(f"bad value for parameter {name!r}")
        params.append((name, value))
    return tuple(params)


def format_params(params: Params) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def find_param(params: Params, name: str) -> str | None:
    """Value of the first parameter called `name`: '' when it has no value, None if absent."""
    key = name.lower()
    for pname, value in params:
        if pname.lower() == key:
            return "" if value is None else value
    return None


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def pct_decode(text: str) -> str:
    """Decode %XX escapes; the octets are UTF-8, and invalid UTF-8 survives as surrogates."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            if not _ESCAPE.match(text, i):
                raise SipParseError("'%' not followed by two hex digits in URI")
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out += ch.encode("utf-8")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def pct_encode(text: str, safe: frozenset[str]) -> str:
    out: list[str] = []
    for ch in text:
        if ch in safe:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)
