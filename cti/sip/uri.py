"""SIP URIs, name-addr values (From/To/Contact/Route) and Via values.

Owns their grammar (RFC 3261 §19.1, §20.10, §20.42, §25.1) and their serialization.
Must never resolve, compare for routing, or look at anything outside the one value
it is given.

Conventions: a parameter with no value (`;lr`) is stored as (name, None) and
`param(name)` returns '' for it and None when the parameter is absent. IPv6 hosts
keep their brackets (`[2001:db8::1]`), as in the grammar's `host`; strip them before
handing one to a socket. URI user, password, parameters and headers are stored
%-decoded and re-escaped on output, so equal URIs compare equal (RFC 3261 §19.1.4).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, replace

from cti.sip._grammar import (
    LWS,
    UNRESERVED,
    Params,
    find_param,
    format_params,
    is_token,
    parse_params,
    pct_decode,
    pct_encode,
    quote,
    read_quoted,
)
from cti.sip.errors import SipParseError

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_PORT = re.compile(r"[0-9]{1,5}")

_USER_SAFE = UNRESERVED | frozenset("&=+$,;?/")
# '#' is not legal in a user part but phones put it in dial strings; accept it, and
# send it back escaped.
_USER_CHARS = _USER_SAFE | frozenset("%#")
_PASSWORD_SAFE = UNRESERVED | frozenset("&=+$,")
_PASSWORD_CHARS = _PASSWORD_SAFE | frozenset("%")
_PARAM_SAFE = UNRESERVED | frozenset("[]/:&+$")
_PARAM_CHARS = _PARAM_SAFE | frozenset("%")
_HEADER_SAFE = UNRESERVED | frozenset("[]/?:+$")
_HEADER_CHARS = _HEADER_SAFE | frozenset("%")
_TEL_CHARS = _PARAM_CHARS | frozenset("=;")

URIParams = tuple[tuple[str, str | None], ...]

# The parsers below are pure and their results frozen, so they are memoized on the
# text: one message is read several times (transaction key, validation, dialog
# matching, the application), and its reply and the next requests of the same dialog
# carry the same From, To and Contact values. Errors are not remembered.
_PARSED_VALUES = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class SipUri:
    """A URI; sip/sips (and tel) are parsed, other schemes are kept opaque."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: URIParams = ()
    headers: tuple[tuple[str, str], ...] = ()
    opaque: str | None = None

    def param(self, name: str) -> str | None:
        return find_param(self.params, name)

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    def __str__(self) -> str:
        if not self.is_sip:
            if self.opaque is not None:
                return f"{self.scheme}:{self.opaque}"
            return f"{self.scheme}:{self.user or ''}{self._format_params()}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(pct_encode(self.user, _USER_SAFE))
            if self.password is not None:
                out.append(":" + pct_encode(self.password, _PASSWORD_SAFE))
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(self._format_params())
        if self.headers:
            out.append(
                "?"
                + "&".join(
                    f"{pct_encode(n, _HEADER_SAFE)}={pct_encode(v, _HEADER_SAFE)}"
                    for n, v in self.headers
                )
            )
        return "".join(out)

    def _format_params(self) -> str:
        return "".join(
            f";{pct_encode(n, _PARAM_SAFE)}"
            + ("" if v is None else f"={pct_encode(v, _PARAM_SAFE)}")
            for n, v in self.params
        )


def _check_chars(text: str, allowed: frozenset[str], what: str) -> None:
    if any(ch not in allowed for ch in text):
        raise SipParseError(f"invalid character in URI {what}")


def _parse_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise SipParseError("invalid IPv6 address") from None
    else:
        host, colon, port_text = text.partition(":")
        rest = colon + port_text
        if not _HOSTNAME.fullmatch(host):
            raise SipParseError("missing or invalid host")
    if not rest:
        return host, None
    if not rest.startswith(":") or not _PORT.fullmatch(rest[1:]) or int(rest[1:]) > 65535:
        raise SipParseError("invalid port")
    return host, int(rest[1:])


def _parse_uri_params(text: str) -> URIParams:
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        _check_chars(item.replace("=", "", 1), _PARAM_CHARS, "parameter")
        if not name or (eq and not value):
            raise SipParseError("empty URI parameter")
        params.append((pct_decode(name), pct_decode(value) if eq else None))
    return tuple(params)


def _parse_sip(scheme: str, rest: str) -> SipUri:
    # '@' is legal only as the userinfo delimiter (never in host, params or headers),
    # so the first one splits; user parts may hold ';' and '?' (RFC 4475 semiuri).
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user_text, colon, password_text = userinfo.partition(":")
        if not user_text:
            raise SipParseError("empty user part in URI")
        _check_chars(user_text, _USER_CHARS, "user part")
        _check_chars(password_text, _PASSWORD_CHARS, "password")
        user = pct_decode(user_text)
        password = pct_decode(password_text) if colon else None
    rest, qmark, headers_text = rest.partition("?")
    hostport, semi, params_text = rest.partition(";")
    host, port = _parse_hostport(hostport)
    params = _parse_uri_params(params_text) if semi else ()
    headers: list[tuple[str, str]] = []
    if qmark:
        for item in headers_text.split("&"):
            name, eq, value = item.partition("=")
            _check_chars(name + value, _HEADER_CHARS, "header")
            if not name or not eq:
                raise SipParseError("malformed URI header")
            headers.append((pct_decode(name), pct_decode(value)))
    return SipUri(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=params,
        headers=tuple(headers),
    )


@functools.lru_cache(maxsize=_PARSED_VALUES)
def parse_uri(text: str) -> SipUri:
    """Parse a URI; raise SipParseError on LWS, bad host or port, or bad escapes."""
    if not text:
        raise SipParseError("empty URI")
    if any(ord(ch) <= 0x20 or ord(ch) >= 0x7F or ch in '<>"' for ch in text):
        raise SipParseError("white space or invalid character in URI")
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme) or not rest:
        raise SipParseError("URI has no scheme")
    scheme = scheme.lower()
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        _check_chars(rest, _TEL_CHARS, "tel URI")
        number, semi, params_text = rest.partition(";")
        if not number:
            raise SipParseError("empty tel URI")
        params = _parse_uri_params(params_text) if semi else ()
        return SipUri(scheme=scheme, user=number, params=params, opaque=rest)
    return SipUri(scheme=scheme, opaque=rest)


@dataclass(frozen=True, slots=True, kw_only=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI, header parameters."""

    display_name: str | None = None
    uri: SipUri
    params: Params = ()

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    def param(self, name: str) -> str | None:
        return find_param(self.params, name)

    def with_tag(self, tag: str) -> NameAddr:
        kept = tuple(p for p in self.params if p[0].lower() != "tag")
        return replace(self, params=(*kept, ("tag", tag)))

    def __str__(self) -> str:
        name = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{name}<{self.uri}>{format_params(self.params)}"


def _after_angle(display: str | None, text: str) -> NameAddr:
    end = text.find(">")
    if end < 0:
        raise SipParseError("'<' without '>'")
    uri = parse_uri(text[1:end])
    after = text[end + 1 :].strip(LWS)
    if after and not after.startswith(";"):
        raise SipParseError("junk after '>'")
    params = parse_params(after[1:]) if after else ()
    return NameAddr(display_name=display, uri=uri, params=params)


@functools.lru_cache(maxsize=_PARSED_VALUES)
def parse_name_addr(text: str) -> NameAddr:
    """Parse `name-addr / addr-spec` followed by header parameters (RFC 3261 §20.10)."""
    s = text.strip(LWS)
    if not s:
        raise SipParseError("empty address")
    if s.startswith('"'):
        display, end = read_quoted(s, 0)
        rest = s[end:].lstrip(LWS)
        if not rest.startswith("<"):
            raise SipParseError("quoted display name not followed by <URI>")
        return _after_angle(display, rest)
    lt = s.find("<")
    if lt >= 0:
        words = re.split(r"[ \t]+", s[:lt].strip(LWS))
        if words == [""]:
            return _after_angle(None, s[lt:])
        if not all(is_token(w) for w in words):
            raise SipParseError("display name is neither tokens nor a quoted string")
        return _after_angle(" ".join(words), s[lt:])
    # addr-spec: the URI ends at the first ';', whatever follows is header params,
    # and a URI with '?' or ',' had to be put in <> (RFC 3261 §20.10).
    uri_text, semi, params_text = s.partition(";")
    uri_text = uri_text.strip(LWS)
    if "?" in uri_text or "," in uri_text:
        raise SipParseError("URI with headers must be enclosed in <>")
    uri = parse_uri(uri_text)
    return NameAddr(uri=uri, params=parse_params(params_text) if semi else ())


@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One Via element. `rport` is None when absent, '' when requested (no value)."""

    protocol: str = "SIP/2.0"
    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    def param(self, name: str) -> str | None:
        return find_param(self.params, name)

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    @property
    def received(self) -> str | None:
        return self.param("received")

    @property
    def rport(self) -> str | None:
        return self.param("rport")

    def with_params(self, **updates: str | int | None) -> Via:
        """Set parameters in place (or append them); None sets a value-less flag."""
        params = list(self.params)
        for name, value in updates.items():
            text = None if value is None else str(value)
            for i, (pname, _) in enumerate(params):
                if pname.lower() == name.lower():
                    params[i] = (pname, text)
                    break
            else:
                params.append((name, text))
        return replace(self, params=tuple(params))

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"


_SENT_PROTOCOL = re.compile(
    r"[ \t]*([^ \t/]+)[ \t]*/[ \t]*([^ \t/]+)[ \t]*/[ \t]*([^ \t/;]+)[ \t]+(.*)", re.S
)


@functools.lru_cache(maxsize=_PARSED_VALUES)
def parse_via(text: str) -> Via:
    """Parse one Via element (split the header with Headers.get_all first)."""
    m = _SENT_PROTOCOL.fullmatch(text)
    if not m or not all(is_token(m.group(i)) for i in (1, 2, 3)):
        raise SipParseError("malformed Via sent-protocol")
    name, version, transport, rest = m.groups()
    rest = rest.strip(LWS)
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise SipParseError("unterminated IPv6 reference in Via")
        host, rest = rest[: end + 1], rest[end + 1 :]
    else:
        hm = _HOSTNAME.match(rest)
        if not hm:
            raise SipParseError("missing host in Via")
        host, rest = hm.group(), rest[hm.end() :]
    hostport = host
    rest = rest.lstrip(LWS)
    if rest.startswith(":"):
        pm = re.match(r":[ \t]*([0-9]+)", rest)
        if not pm:
            raise SipParseError("invalid port in Via")
        hostport += ":" + pm.group(1)
        rest = rest[pm.end() :].lstrip(LWS)
    host, port = _parse_hostport(hostport)
    if rest and not rest.startswith(";"):
        raise SipParseError("junk after Via sent-by")
    params = parse_params(rest[1:]) if rest else ()
    return Via(
        protocol=f"{name.upper()}/{version}",
        transport=transport.upper(),
        host=host,
        port=port,
        params=params,
    )
