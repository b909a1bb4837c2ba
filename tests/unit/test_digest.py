"""Digest authentication (cti.sip.digest): RFC 7616 vectors, parsing, nonces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.sip.digest import (
    DigestChallenge,
    DigestCredentials,
    DigestError,
    NonceIssuer,
    build_credentials,
    ha1,
    ha1_set,
    parse_authorization,
    parse_challenge,
    verify,
)

# RFC 7616 §3.9.1: the same request authenticated with MD5 and with SHA-256.
RFC_USER, RFC_REALM, RFC_PASSWORD = "Mufasa", "http-auth@example.org", "Circle of Life"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaQ51ixA2xvvfbVd9M1tuxGi8KFnO1R26z6BMGo"
RFC_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}
SECRET = b"0123456789abcdef0123456789abcdef"


def rfc_authorization(algorithm: str, response: str | None = None) -> str:
    return (
        f'Digest username="{RFC_USER}", realm="{RFC_REALM}", uri="/dir/index.html", '
        f"algorithm={algorithm}, nonce=\"{RFC_NONCE}\", nc=00000001, "
        f'cnonce="{RFC_CNONCE}", qop=auth, '
        f'response="{response or RFC_RESPONSES[algorithm]}", opaque="{RFC_OPAQUE}"'
    )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_verifies(algorithm: str) -> None:
    credentials = parse_authorization(rfc_authorization(algorithm))
    assert credentials is not None
    assert credentials.username == RFC_USER and credentials.nc == "00000001"
    assert credentials.opaque == RFC_OPAQUE and credentials.qop == "auth"
    secret = ha1(RFC_USER, RFC_REALM, RFC_PASSWORD, algorithm)  # type: ignore[arg-type]
    assert verify(credentials, method="GET", password_ha1=secret, algorithm=algorithm)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_is_reproduced_by_the_client_side(algorithm: str) -> None:
    challenge = DigestChallenge(realm=RFC_REALM, nonce=RFC_NONCE, opaque=RFC_OPAQUE, algorithm=algorithm)  # type: ignore[arg-type]
    credentials = build_credentials(
        challenge, username=RFC_USER, password=RFC_PASSWORD, method="GET",
        uri="/dir/index.html", cnonce=RFC_CNONCE,
    )
    assert credentials.response == RFC_RESPONSES[algorithm]


def test_tampered_response_or_wrong_method_fails() -> None:
    secret = ha1(RFC_USER, RFC_REALM, RFC_PASSWORD, "SHA-256")
    good = RFC_RESPONSES["SHA-256"]
    tampered = parse_authorization(rfc_authorization("SHA-256", good[:-1] + ("0" if good[-1] != "0" else "1")))
    assert tampered is not None
    assert not verify(tampered, method="GET", password_ha1=secret, algorithm="SHA-256")
    genuine = parse_authorization(rfc_authorization("SHA-256"))
    assert genuine is not None
    assert not verify(genuine, method="REGISTER", password_ha1=secret, algorithm="SHA-256")
    assert not verify(genuine, method="GET", password_ha1=secret, algorithm="MD5")
    wrong = ha1(RFC_USER, RFC_REALM, "circle of life", "SHA-256")
    assert not verify(genuine, method="GET", password_ha1=wrong, algorithm="SHA-256")


def test_no_qop_rfc2069_compatibility() -> None:
    challenge = DigestChallenge(realm="example.com", nonce="abc", algorithm="MD5", qop=None)
    credentials = build_credentials(challenge, username="alice", password="pw", method="REGISTER", uri="sip:example.com")
    assert credentials.qop is None and credentials.nc is None and credentials.cnonce is None
    header = credentials.to_header()
    parsed = parse_authorization(header)
    assert parsed == credentials
    assert verify(parsed, method="REGISTER", password_ha1=ha1("alice", "example.com", "pw", "MD5"), algorithm="MD5")


def test_absent_algorithm_means_md5() -> None:
    creds = parse_authorization('Digest username="a", realm="r", nonce="n", uri="sip:r", response="x"')
    assert creds is not None and creds.algorithm is None and creds.effective_algorithm == "MD5"


@pytest.mark.parametrize(
    "value", ["NoOneKnowsThisScheme opaque-data=here", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "", "Bearer"]
)
def test_other_schemes_are_not_digest(value: str) -> None:
    assert parse_authorization(value) is None


@pytest.mark.parametrize(
    "value",
    [
        'Digest realm="r", nonce="n", uri="u", response="x"',  # no username
        'Digest username="a", nonce="n", uri="u", response="x"',  # no realm
        'Digest username="a", realm="r", uri="u", response="x"',  # no nonce
        'Digest username="a", realm="r", nonce="n", response="x"',  # no uri
        'Digest username="a", realm="r", nonce="n", uri="u"',  # no response
        'Digest username="a, realm="r", nonce="n", uri="u", response="x"',  # bad quoting
        'Digest username="a", username="b", realm="r", nonce="n", uri="u", response="x"',
        'Digest username="a" realm="r", nonce="n", uri="u", response="x"',  # no comma
        'Digest username=, realm="r", nonce="n", uri="u", response="x"',
        'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth',  # no nc
        "Digest ",
        'Digest username="a", realm="r", nonce="n", uri="u", response="x",',
    ],
)
def test_malformed_digest_raises(value: str) -> None:
    with pytest.raises(DigestError):
        parse_authorization(value)


def test_challenge_header_round_trips_and_is_lenient_about_case() -> None:
    challenge = DigestChallenge(realm="example.com", nonce="n0", opaque="op", algorithm="SHA-256", stale=True)
    header = challenge.to_header()
    assert header.startswith("Digest ") and "algorithm=SHA-256" in header and 'qop="auth"' in header
    assert parse_challenge(header) == challenge
    assert parse_challenge('digest REALM="x", Nonce="y", algorithm=sha-256') == DigestChallenge(
        realm="x", nonce="y", algorithm="SHA-256", qop=None
    )
    assert parse_challenge("Basic realm=x") is None


def test_ha1_set_has_both_algorithms() -> None:
    both = ha1_set("alice", "example.com", "pw")
    assert both == {"SHA-256": ha1("alice", "example.com", "pw", "SHA-256"), "MD5": ha1("alice", "example.com", "pw", "MD5")}
    assert len(both["MD5"]) == 32 and len(both["SHA-256"]) == 64


def test_nonce_lifecycle() -> None:
    issuer = NonceIssuer(SECRET, 30, realm="example.com")
    nonce = issuer.issue(1000.0)
    assert issuer.check(nonce, 1000.0) == "valid"
    assert issuer.check(nonce, 1029.0) == "valid"
    assert issuer.check(nonce, 1031.0) == "stale"
    assert issuer.check(nonce, 900.0) == "invalid"  # from the future, beyond the skew
    assert issuer.issue(1000.0) != nonce  # salted


def test_nonce_from_another_process_with_the_same_secret_is_valid() -> None:
    nonce = NonceIssuer(SECRET, 30, realm="example.com").issue(5.0)
    assert NonceIssuer(SECRET, 30, realm="example.com").check(nonce, 6.0) == "valid"
    assert NonceIssuer(SECRET, 30, realm="other.example").check(nonce, 6.0) == "invalid"
    assert NonceIssuer(b"x" * 32, 30, realm="example.com").check(nonce, 6.0) == "invalid"


@pytest.mark.parametrize("bad", ["", "!!!!", "AAAA", "A" * 200, "é" * 10])
def test_garbage_nonces_are_invalid(bad: str) -> None:
    issuer = NonceIssuer(SECRET, 30, realm="example.com")
    assert issuer.check(bad, 1.0) == "invalid"
    good = issuer.issue(1.0)
    assert issuer.check(good[:-2] + ("AA" if good[-2:] != "AA" else "BB"), 1.0) == "invalid"


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        NonceIssuer(b"short", 30)


_quotable = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30
)
_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)


@given(
    username=_quotable, realm=_quotable, nonce=_quotable, uri=_quotable,
    response=st.text(alphabet="0123456789abcdef", min_size=32, max_size=64),
    algorithm=st.sampled_from([None, "MD5", "SHA-256"]),
    opaque=st.none() | _quotable,
    qop=st.booleans(), cnonce=_quotable, nc=st.integers(min_value=1, max_value=2**32 - 1),
)
def test_parse_authorization_round_trips(
    username: str, realm: str, nonce: str, uri: str, response: str, algorithm: str | None,
    opaque: str | None, qop: bool, cnonce: str, nc: int,
) -> None:
    credentials = DigestCredentials(
        username=username, realm=realm, nonce=nonce, uri=uri, response=response,
        algorithm=algorithm, opaque=opaque, qop="auth" if qop else None,
        cnonce=cnonce if qop else None, nc=f"{nc:08x}" if qop else None,
    )
    assert parse_authorization(credentials.to_header()) == credentials


@given(realm=_quotable, nonce=_quotable, opaque=st.none() | _quotable,
       algorithm=st.sampled_from(["MD5", "SHA-256"]), stale=st.booleans())
def test_parse_challenge_round_trips(realm: str, nonce: str, opaque: str | None, algorithm: str, stale: bool) -> None:
    challenge = DigestChallenge(realm=realm, nonce=nonce, opaque=opaque, algorithm=algorithm, stale=stale)  # type: ignore[arg-type]
    assert parse_challenge(challenge.to_header()) == challenge


@given(st.text(max_size=200))
def test_parse_authorization_never_raises_anything_but_digest_error(value: str) -> None:
    try:
        parse_authorization("Digest " + value)
    except DigestError:
        pass
