"""Webhook signatures and the replay guard: pure, no clock, no sockets."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_sync import signing
from crm_sync.seen_keys import DONE, PENDING, MemorySeenKeys
from crm_sync.signing import Verdict, sign, verify

SECRET = b"s3cret-s3cret-s3cret"
BODY = b'{"id":"evt_1","type":"kyc.updated"}'
T = 1_740_830_400


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET, f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, T, BODY) == f"t={T},v1={expected}"


@pytest.mark.parametrize(
    ("header", "body", "now", "verdict"),
    [
        (sign(SECRET, T, BODY), BODY, T, Verdict.OK),
        (sign(SECRET, T, BODY), BODY, T + 300, Verdict.OK),  # the tolerance is inclusive
        (sign(SECRET, T, BODY), BODY, T - 300, Verdict.OK),  # a sender's clock a bit ahead
        (sign(SECRET, T, BODY), BODY, T + 301, Verdict.STALE),
        (sign(SECRET, T, BODY), BODY + b" ", T, Verdict.BAD_SIGNATURE),  # body changed
        (sign(b"another-secret-entirely", T, BODY), BODY, T, Verdict.BAD_SIGNATURE),
        (sign(SECRET, T, BODY).replace(f"t={T}", f"t={T + 1}"), BODY, T, Verdict.BAD_SIGNATURE),  # t changed
        # A forged signature is refused as forged, whatever its timestamp says.
        (sign(b"another-secret-entirely", T - 9999, BODY), BODY, T, Verdict.BAD_SIGNATURE),
        (None, BODY, T, Verdict.MISSING),
        ("", BODY, T, Verdict.MISSING),
        ("v1=abc", BODY, T, Verdict.MALFORMED),
        (f"t={T}", BODY, T, Verdict.MALFORMED),
        (f"t=soon,v1={'0' * 64}", BODY, T, Verdict.MALFORMED),
        ("garbage", BODY, T, Verdict.MALFORMED),
        (f"t={T},v1=" + "é" * 64, BODY, T, Verdict.BAD_SIGNATURE),
    ],
)
def test_verify(header: str | None, body: bytes, now: float, verdict: Verdict) -> None:
    assert verify(header, body, secrets=SECRET, now=now, tolerance_s=300) is verdict


def test_rotation_accepts_either_secret_and_extra_signatures() -> None:
    old, new = b"old-secret-old-secret", b"new-secret-new-secret"
    header = f"{sign(old, T, BODY)},v1={signing.compute(new, T, BODY)},v2=future-scheme"
    assert verify(header, BODY, secrets=(new,), now=T, tolerance_s=300) is Verdict.OK
    assert verify(sign(old, T, BODY), BODY, secrets=(new, old), now=T, tolerance_s=300) is Verdict.OK
    assert verify(sign(old, T, BODY), BODY, secrets=(new,), now=T, tolerance_s=300) is Verdict.BAD_SIGNATURE


def test_macs_are_compared_in_constant_time_and_never_with_eq(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    wrong = f"t={T},v1={'0' * 64},v1={signing.compute(SECRET, T, BODY)}"
    assert verify(wrong, BODY, secrets=(b"x" * 16, SECRET), now=T, tolerance_s=300) is Verdict.OK
    # Every (secret, candidate) pair was compared, with compare_digest, even after the match.
    assert len(calls) == 4


@given(body=st.binary(max_size=512), t=st.integers(min_value=0, max_value=4_000_000_000),
       secret=st.binary(min_size=16, max_size=64))
def test_sign_then_verify_round_trips(body: bytes, t: int, secret: bytes) -> None:
    assert verify(sign(secret, t, body), body, secrets=secret, now=t, tolerance_s=0) is Verdict.OK
    parsed = signing.parse(sign(secret, t, body))
    assert parsed is not None and parsed.timestamp == t


async def test_seen_keys_remember_within_the_window_only() -> None:
    keys = MemorySeenKeys(window_s=600, hold_s=600)
    assert await keys.claim("sig-a", now=1000) is None
    assert await keys.claim("sig-a", now=1599) == PENDING
    assert await keys.claim("sig-b", now=1500) is None
    assert await keys.claim("sig-a", now=1601) is None  # expired, then remembered anew
    assert len(keys) == 2
    await keys.forget("sig-b")
    assert await keys.claim("sig-b", now=1602) is None


async def test_a_claim_holds_briefly_and_a_confirmation_for_the_window() -> None:
    keys = MemorySeenKeys(window_s=86_400, hold_s=60)
    assert await keys.claim("evt", now=0) is None
    assert await keys.claim("evt", now=30) == PENDING
    assert await keys.claim("evt", now=61) is None  # the claimer died: taken again
    await keys.confirm("evt", now=62)
    assert await keys.claim("evt", now=80_000) == DONE
    assert await keys.claim("evt", now=86_463) is None


async def test_seen_keys_are_bounded() -> None:
    keys = MemorySeenKeys(window_s=600, max_entries=3)
    for n in range(10):
        await keys.claim(f"k{n}", now=1000 + n)
    assert len(keys) <= 3
    assert await keys.claim("k9", now=1010) == PENDING  # the newest survive
