"""HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 7616, RFC 8760).

Owns the WWW-Authenticate / Authorization grammar for the Digest scheme, stateless
nonces (a timestamp sealed with an HMAC, so any hub process sharing the secret can
check one), HA1 and response computation for MD5 and SHA-256 with qop=auth or no
qop (RFC 2069 compatibility), and constant-time verification. Must never store a
password, keep per-nonce state, read a clock or do I/O: `now` comes in as an
argument, and the caller stores only HA1 values.

Not supported on purpose: qop=auth-int (a body hash for REGISTER buys nothing), the
`-sess` algorithms and `userhash` (no SIP phone we target sends them); credentials
that ask for them simply fail verification, so the registrar challenges again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "DigestChallenge",
    "DigestCredentials",
    "DigestError",
    "NonceIssuer",
    "NonceStatus",
    "build_credentials",
    "ha1",
    "ha1_set",
    "parse_authorization",
    "parse_challenge",
    "verify",
]

Algorithm = Literal["SHA-256", "MD5"]
NonceStatus = Literal["valid", "stale", "invalid"]
# RFC 8760 §2.4: challenges go out in order of preference, strongest first.
ALGORITHMS: tuple[Algorithm, ...] = ("SHA-256", "MD5")

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
_LWS = " \t"
_REQUIRED = ("username", "realm", "nonce", "uri", "response")
# Per RFC 7616 §3.4 these are quoted-string; the others are tokens. We read either
# form (phones disagree), but write them the way the RFC says.
_QUOTED_OUT = frozenset({"username", "realm", "nonce", "uri", "response", "cnonce", "opaque"})
_MAX_HEADER = 4096  # an Authorization value longer than this is an attack, not a phone


class DigestError(ValueError):
    """A Digest Authorization/WWW-Authenticate value that does not follow the grammar."""


def _h(algorithm: str, text: str) -> str:
    return _HASHES[algorithm](text.encode("utf-8", "surrogateescape")).hexdigest()


def _canonical_algorithm(name: str | None) -> str:
    """RFC 7616 §3.4: algorithm is case-insensitive; absent means MD5."""
    if name is None:
        return "MD5"
    upper = name.upper()
    return "SHA-256" if upper == "SHA-256" else ("MD5" if upper == "MD5" else name)


def ha1(username: str, realm: str, password: str, algorithm: Algorithm) -> str:
    """H(username:realm:password): what a credentials store keeps instead of the password."""
    return _h(algorithm, f"{username}:{realm}:{password}")


def ha1_set(username: str, realm: str, password: str) -> dict[str, str]:
    """HA1 for every supported algorithm (they differ, so each must be stored)."""
    return {alg: ha1(username, realm, password, alg) for alg in ALGORITHMS}


def _quote(text: str) -> str:
    if any(ch in text for ch in "\r\n"):
        raise ValueError("CR/LF in a Digest parameter")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_scheme(value: str) -> tuple[str, str]:
    text = value.strip(_LWS)
    end = 0
    while end < len(text) and text[end] in _TOKEN_CHARS:
        end += 1
    if end == 0 or (end < len(text) and text[end] not in _LWS):
        return "", text
    return text[:end], text[end:].lstrip(_LWS)


def _parse_params(text: str) -> dict[str, str]:
    """`auth-param *(COMMA auth-param)`; names lowercased, quoted values unescaped."""
    if len(text) > _MAX_HEADER:
        raise DigestError("Digest parameters too long")
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _LWS:
            i += 1
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        name = text[start:i].lower()
        if not name:
            raise DigestError("missing Digest parameter name")
        while i < n and text[i] in _LWS:
            i += 1
        if i >= n or text[i] != "=":
            raise DigestError(f"Digest parameter {name!r} has no value")
        i += 1
        while i < n and text[i] in _LWS:
            i += 1
        if i < n and text[i] == '"':
            out: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise DigestError(f"unterminated quoted value of {name!r}")
                ch = text[i]
                if ch == "\\":
                    if i + 1 >= n:
                        raise DigestError(f"unterminated quoted value of {name!r}")
                    out.append(text[i + 1])
                    i += 2
                elif ch == '"':
                    i += 1
                    break
                else:
                    out.append(ch)
                    i += 1
            value = "".join(out)
        else:
            start = i
            while i < n and text[i] in _TOKEN_CHARS:
                i += 1
            value = text[start:i]
            if not value:
                raise DigestError(f"Digest parameter {name!r} has an empty or bad value")
        if name in params:
            # Two values for one name: whichever we picked, a proxy may pick the other.
            raise DigestError(f"duplicate Digest parameter {name!r}")
        params[name] = value
        while i < n and text[i] in _LWS:
            i += 1
        if i >= n:
            return params
        if text[i] != ",":
            raise DigestError(f"junk after Digest parameter {name!r}")
        i += 1


def _format(params: Mapping[str, str | None]) -> str:
    parts = []
    for name, value in params.items():
        if value is None:
            continue
        parts.append(f"{name}={_quote(value) if name in _QUOTED_OUT else value}")
    return "Digest " + ", ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestChallenge:
    """One WWW-Authenticate: Digest challenge (one per algorithm, RFC 8760)."""

    realm: str
    nonce: str
    opaque: str | None = None
    algorithm: Algorithm = "MD5"
    qop: str | None = "auth"
    stale: bool = False

    def to_header(self) -> str:
        out = [f"realm={_quote(self.realm)}", f"nonce={_quote(self.nonce)}"]
        if self.opaque is not None:
            out.append(f"opaque={_quote(self.opaque)}")
        out.append(f"algorithm={self.algorithm}")
        if self.qop is not None:
            out.append(f"qop={_quote(self.qop)}")  # qop-options is a quoted list
        if self.stale:
            out.append("stale=true")
        return "Digest " + ", ".join(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestCredentials:
    """A parsed Authorization: Digest value. `algorithm` is as sent (None: MD5 implied)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: str | None = None

    @property
    def effective_algorithm(self) -> str:
        return _canonical_algorithm(self.algorithm)

    def to_header(self) -> str:
        return _format(
            {
                "username": self.username,
                "realm": self.realm,
                "nonce": self.nonce,
                "uri": self.uri,
                "response": self.response,
                "algorithm": self.algorithm,
                "cnonce": self.cnonce,
                "opaque": self.opaque,
                "qop": self.qop,
                "nc": self.nc,
            }
        )


def parse_authorization(value: str) -> DigestCredentials | None:
    """Credentials from an Authorization value; None when the scheme is not Digest.

    Raises DigestError for a Digest value that is malformed or lacks a required
    parameter, and for qop=auth without nc/cnonce.
    """
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        return None
    params = _parse_params(rest)
    missing = [name for name in _REQUIRED if name not in params]
    if missing:
        raise DigestError(f"Digest credentials lack {', '.join(missing)}")
    qop = params.get("qop")
    if qop is not None and ("nc" not in params or "cnonce" not in params):
        raise DigestError("qop without nc and cnonce")
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=params.get("algorithm"),
        cnonce=params.get("cnonce"),
        opaque=params.get("opaque"),
        qop=qop,
        nc=params.get("nc"),
    )


def parse_challenge(value: str) -> DigestChallenge | None:
    """A WWW-Authenticate: Digest value (what a phone reads); None for other schemes."""
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        return None
    params = _parse_params(rest)
    if "realm" not in params or "nonce" not in params:
        raise DigestError("Digest challenge lacks realm or nonce")
    algorithm = _canonical_algorithm(params.get("algorithm"))
    if algorithm not in _HASHES:
        raise DigestError(f"unsupported algorithm {algorithm!r}")
    return DigestChallenge(
        realm=params["realm"],
        nonce=params["nonce"],
        opaque=params.get("opaque"),
        algorithm="SHA-256" if algorithm == "SHA-256" else "MD5",
        qop=params.get("qop"),
        stale=params.get("stale", "").lower() == "true",
    )


def _expected(
    credentials: DigestCredentials, *, method: str, password_ha1: str, algorithm: str
) -> str | None:
    ha2 = _h(algorithm, f"{method}:{credentials.uri}")
    if credentials.qop is None:
        return _h(algorithm, f"{password_ha1}:{credentials.nonce}:{ha2}")
    if credentials.qop.lower() != "auth" or credentials.nc is None or credentials.cnonce is None:
        return None
    return _h(
        algorithm,
        f"{password_ha1}:{credentials.nonce}:{credentials.nc}:{credentials.cnonce}:auth:{ha2}",
    )


def verify(
    credentials: DigestCredentials, *, method: str, password_ha1: str, algorithm: Algorithm
) -> bool:
    """Whether `credentials` prove knowledge of the password behind `password_ha1`.

    `algorithm` is the one `password_ha1` was computed with; credentials for another
    algorithm never verify. The comparison is constant-time.
    """
    if credentials.effective_algorithm != algorithm:
        return False
    expected = _expected(
        credentials, method=method, password_ha1=password_ha1, algorithm=algorithm
    )
    if expected is None:
        return False
    # compare_digest on ASCII bytes: a non-ASCII response just fails, never raises.
    given = credentials.response.lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected.encode("ascii"), given)


def build_credentials(
    challenge: DigestChallenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str | None = None,
    nc: int = 1,
) -> DigestCredentials:
    """The client side: answer `challenge` (tests, and the hub's own outbound REGISTERs)."""
    password_ha1 = ha1(username, challenge.realm, password, challenge.algorithm)
    use_qop = challenge.qop is not None and "auth" in [
        q.strip(_LWS).lower() for q in challenge.qop.split(",")
    ]
    draft = DigestCredentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response="",
        algorithm=challenge.algorithm,
        cnonce=(cnonce or secrets.token_hex(8)) if use_qop else None,
        opaque=challenge.opaque,
        qop="auth" if use_qop else None,
        nc=f"{nc:08x}" if use_qop else None,
    )
    response = _expected(draft, method=method, password_ha1=password_ha1, algorithm=challenge.algorithm)
    assert response is not None
    return DigestCredentials(
        username=draft.username,
        realm=draft.realm,
        nonce=draft.nonce,
        uri=draft.uri,
        response=response,
        algorithm=draft.algorithm,
        cnonce=draft.cnonce,
        opaque=draft.opaque,
        qop=draft.qop,
        nc=draft.nc,
    )


_NONCE_HEAD = struct.Struct(">Q8s")  # issue time in ms, 8 random bytes
_MAC_LEN = 32


class NonceIssuer:
    """Stateless nonces: base64url(time ‖ salt ‖ HMAC-SHA256(secret, time ‖ salt ‖ realm)).

    Any process holding the same secret can check a nonce, so a phone's second
    REGISTER may land on another hub process. A nonce is 'stale' once older than
    `lifetime_s` (the phone retries without asking the user, RFC 7616 §3.3), and
    'invalid' when forged, mangled, for another realm or from the future beyond
    `max_skew_s` (clock skew between processes).
    """

    def __init__(
        self, secret: bytes, lifetime_s: float, *, realm: str = "", max_skew_s: float = 30.0
    ) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        self._secret = secret
        self.lifetime_s = lifetime_s
        self.realm = realm
        self.max_skew_s = max_skew_s

    def _mac(self, head: bytes) -> bytes:
        return hmac.new(self._secret, head + self.realm.encode("utf-8"), hashlib.sha256).digest()

    def issue(self, now: float) -> str:
        head = _NONCE_HEAD.pack(int(now * 1000), secrets.token_bytes(8))
        return base64.urlsafe_b64encode(head + self._mac(head)).rstrip(b"=").decode("ascii")

    def check(self, nonce: str, now: float) -> NonceStatus:
        if len(nonce) > 128:
            return "invalid"
        try:
            raw = base64.b64decode(nonce + "=" * (-len(nonce) % 4), altchars=b"-_", validate=True)
        except ValueError:  # binascii.Error and non-ASCII text are both ValueErrors
            return "invalid"
        if len(raw) != _NONCE_HEAD.size + _MAC_LEN:
            return "invalid"
        head, mac = raw[: _NONCE_HEAD.size], raw[_NONCE_HEAD.size :]
        if not hmac.compare_digest(mac, self._mac(head)):
            return "invalid"
        issued = _NONCE_HEAD.unpack(head)[0] / 1000.0
        if issued > now + self.max_skew_s:
            return "invalid"
        if now - issued > self.lifetime_s:
            return "stale"
        return "valid"

    def opaque(self) -> str:
        """A per-realm constant the phone echoes: lets us tell our challenges apart."""
        return hmac.new(self._secret, b"opaque:" + self.realm.encode("utf-8"), hashlib.sha256).hexdigest()[:24]
