"""Webhook signatures: HMAC-SHA256 over a timestamp and the raw body.

Owns the header format `X-CTIHub-Signature: t=<unix seconds>,v1=<hex>` where
`hex = hmac_sha256(secret, f"{t}." + body)`, the checks against it (signature,
freshness). The memory of what was already seen lives in `seen_keys`.
Pure: no clock (`now` comes in), no I/O, no logging. Must never compare MACs with
`==` (timing leaks the right answer byte by byte), and never hint in its result
which byte was wrong.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass

HEADER = "X-CTIHub-Signature"
SCHEME = "v1"


class Verdict(enum.Enum):
    OK = "ok"
    MISSING = "missing_signature"
    MALFORMED = "malformed_signature"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale_timestamp"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedSignature:
    timestamp: int
    signatures: tuple[str, ...]


def compute(secret: bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `f"{timestamp}." + body` under `secret`."""
    return hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The header value a sender puts in `X-CTIHub-Signature` for `body` at `timestamp`."""
    return f"t={timestamp},{SCHEME}={compute(secret, timestamp, body)}"


def parse(header: str) -> ParsedSignature | None:
    """`t=..,v1=..[,v1=..]` into its parts, or None when it is not that shape.

    Several v1 values are allowed so that a sender can sign with the old and the new
    secret while both sides rotate it.
    """
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return None
        if key == "t":
            if not value.isdigit() or len(value) > 12:
                return None
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value.lower())
        # Unknown schemes are skipped: a sender may add v2 before we understand it.
    if timestamp is None or not signatures:
        return None
    return ParsedSignature(timestamp=timestamp, signatures=tuple(signatures))


def verify(
    header: str | None, body: bytes, *, secrets: tuple[bytes, ...] | bytes, now: float, tolerance_s: float
) -> Verdict:
    """Whether `header` signs `body` under one of `secrets` within `tolerance_s` of `now`.

    The MAC is checked before freshness, so that an unsigned request never learns
    whether its timestamp would have been accepted.
    """
    if not header:
        return Verdict.MISSING
    parsed = parse(header)
    if parsed is None:
        return Verdict.MALFORMED
    keys = (secrets,) if isinstance(secrets, bytes) else secrets
    matched = False
    for secret in keys:
        expected = compute(secret, parsed.timestamp, body)
        for candidate in parsed.signatures:
            # Every pair is compared even after a match: the time taken must not
            # depend on which candidate (or which secret) was the right one.
            matched |= hmac.compare_digest(expected.encode("ascii"), candidate.encode("ascii", "replace"))
    if not matched:
        return Verdict.BAD_SIGNATURE
    if abs(now - parsed.timestamp) > tolerance_s:
        return Verdict.STALE
    return Verdict.OK


__all__ = ["HEADER", "ParsedSignature", "Verdict", "compute", "parse", "sign", "verify"]
