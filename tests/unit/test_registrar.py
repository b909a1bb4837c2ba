"""The registrar's policy (cti.registrar.core) as a playbook: REGISTER in, decision out.

No sockets and no event loop for the core: a small harness plays the caller's part
(fetch bindings and HA1s, apply the changes), so each test reads as the phone's side
of the conversation. The RFC 4475 registrar cases are fed from their files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from cti.registrar import (
    AddBinding,
    AuthFailed,
    Binding,
    InMemoryBindingStore,
    LockoutPolicy,
    RefreshBinding,
    Registrar,
    RegistrarConfig,
    RegistrarDecision,
    RegistrarService,
    RemoveAllBindings,
    RemoveBinding,
    SourceLockedOut,
)
from cti.registrar.bindings import apply_changes
from cti.sip.digest import DigestChallenge, NonceIssuer, build_credentials, ha1_set, parse_challenge
from cti.sip.headers import Headers
from cti.sip.message import SipRequest, SipResponse, parse_message, serialize
from cti.sip.uri import parse_name_addr

TORTURE_DIR = Path(
    os.environ.get(
        "CTIHUB_SIP_TORTURE_DIR",
        Path(__file__).resolve().parents[2].parent / "shared" / "sip-torture",
    )
)
REALM = "example.com"
SECRET = b"registrar-test-secret-0123456789"
NOW = 1_700_000_000.0
PHONE = ("192.0.2.10", 5060)
PHONE2 = ("198.51.100.7", 40123)
ATTACKER = ("203.0.113.66", 5060)
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "j.user": "secret", "watson": "secret", "user": "secret"}


def make_registrar(**config: object) -> Registrar:
    settings: dict[str, object] = {"realm": REALM, "domains": frozenset({REALM})}
    settings.update(config)
    cfg = RegistrarConfig(**settings)  # type: ignore[arg-type]
    return Registrar(
        cfg,
        nonces=NonceIssuer(SECRET, 300, realm=REALM),
        lockout=LockoutPolicy(max_failures=5, window_s=60, lockout_s=300),
    )


def register(
    user: str = "alice",
    contacts: Sequence[str] = ("<sip:alice@192.0.2.10:5060;transport=udp>",),
    *,
    call_id: str = "call-1@192.0.2.10",
    cseq: int = 1,
    expires: str | None = None,
    from_user: str | None = None,
    to_host: str = REALM,
    authorization: Sequence[str] = (),
) -> SipRequest:
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-reg1",
        "Max-Forwards: 70",
        f"From: <sip:{from_user or user}@{to_host}>;tag=ft1",
        f"To: <sip:{user}@{to_host}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *(f"Contact: {c}" for c in contacts),
        *([f"Expires: {expires}"] if expires is not None else []),
        *(f"Authorization: {a}" for a in authorization),
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


def with_authorization(request: SipRequest, value: str) -> SipRequest:
    headers = request.headers.copy()
    headers.add("Authorization", value)
    return SipRequest(method=request.method, uri=request.uri, headers=headers, body=request.body)


def challenges_of(response: SipResponse) -> list[DigestChallenge]:
    out = [parse_challenge(v) for v in response.headers.get_lines("WWW-Authenticate")]
    assert all(c is not None for c in out)
    return [c for c in out if c is not None]


class Phone:
    """Plays the caller of the pure registrar: an in-memory store and a user table."""

    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar
        self.bindings: dict[str, list[Binding]] = {}

    def send(self, request: SipRequest, *, now: float = NOW, source: tuple[str, int] = PHONE) -> RegistrarDecision:
        needs = self.registrar.lookups(request)
        current = [b for b in self.bindings.get(needs.aor or "", []) if b.expires_at > now]
        ha1s = ha1_set(needs.username, REALM, PASSWORDS[needs.username]) if needs.username in PASSWORDS else None
        decision = self.registrar.decide(request, source=source, now=now, bindings=current, ha1s=ha1s)
        if decision.aor is not None:
            self.bindings[decision.aor] = apply_changes(current, decision.changes, now)
        return decision

    def authed(
        self,
        request: SipRequest,
        *,
        username: str | None = None,
        password: str | None = None,
        algorithm: str = "SHA-256",
        now: float = NOW,
        source: tuple[str, int] = PHONE,
    ) -> RegistrarDecision:
        """Send, take the 401's challenge for `algorithm`, answer it (as a phone does)."""
        first = self.send(request, now=now, source=source)
        assert first.response.status == 401, first.response
        challenge = next(c for c in challenges_of(first.response) if c.algorithm == algorithm)
        user = username or (request.to.uri.user or "")
        credentials = build_credentials(
            challenge, username=user, password=password or PASSWORDS[user],
            method="REGISTER", uri=request.uri,
        )
        return self.send(with_authorization(request, credentials.to_header()), now=now, source=source)

    def contacts(self, aor: str = f"sip:alice@{REALM}") -> list[str]:
        return [b.contact for b in self.bindings.get(aor, [])]


def contact_lines(response: SipResponse) -> list[str]:
    return response.headers.get_all("Contact")


# --- challenge and registration --------------------------------------------------------


def test_register_without_credentials_gets_two_challenges_sha256_first() -> None:
    decision = Phone(make_registrar()).send(register())
    assert decision.response.status == 401
    assert decision.changes == () and decision.events == ()
    challenges = challenges_of(decision.response)
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert all(c.realm == REALM and c.qop == "auth" and c.opaque and not c.stale for c in challenges)
    assert (decision.response.headers.get("To") or "").count("tag=") == 1


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_valid_credentials_register_the_contact(algorithm: str) -> None:
    phone = Phone(make_registrar())
    decision = phone.authed(register(), algorithm=algorithm)
    response = decision.response
    assert response.status == 200
    assert contact_lines(response) == ["<sip:alice@192.0.2.10:5060;transport=udp>;expires=3600"]
    assert response.headers.get("Date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert decision.aor == "sip:alice@example.com"
    [change] = decision.changes
    assert isinstance(change, AddBinding)
    binding = change.binding
    assert binding.contact == "sip:alice@192.0.2.10:5060;transport=udp"
    assert binding.received == PHONE and binding.transport == "UDP" and binding.username == "alice"
    assert binding.expires_at == NOW + 3600 and binding.call_id == "call-1@192.0.2.10" and binding.cseq == 1
    # The 200 is a well-formed message that a phone can read back.
    again = parse_message(serialize(response))
    assert isinstance(again, SipResponse)
    assert str(parse_name_addr(again.headers.get_all("Contact")[0]).uri) == binding.contact


def test_refresh_keeps_the_binding_and_moves_its_expiry() -> None:
    phone = Phone(make_registrar())
    phone.authed(register(cseq=1))
    later = NOW + 1800
    decision = phone.authed(register(cseq=2, expires="600"), now=later)
    assert decision.response.status == 200
    [change] = decision.changes
    assert isinstance(change, RefreshBinding)
    assert change.binding.registered_at == NOW and change.binding.expires_at == later + 600
    assert contact_lines(decision.response) == ["<sip:alice@192.0.2.10:5060;transport=udp>;expires=600"]


def test_several_devices_per_agent() -> None:
    phone = Phone(make_registrar())
    phone.authed(register(contacts=["<sip:alice@192.0.2.10:5060>"], call_id="desk"))
    decision = phone.authed(
        register(contacts=["<sip:alice@198.51.100.7:40123;ob>;expires=120", '"Soft" <sip:alice@10.0.0.9>;q=0.5'],
                 call_id="laptop"),
        source=PHONE2, now=NOW + 10,
    )
    assert decision.response.status == 200
    # Oldest registration first; one REGISTER's contacts in contact-key order.
    assert contact_lines(decision.response) == [
        "<sip:alice@192.0.2.10:5060>;expires=3590",
        "<sip:alice@10.0.0.9>;q=0.5;expires=3600",
        "<sip:alice@198.51.100.7:40123;ob>;expires=120",
    ]
    assert [b.received for b in decision.bindings] == [PHONE, PHONE2, PHONE2]
    assert decision.bindings[1].q == 0.5


def test_query_without_contact_lists_bindings_and_changes_nothing() -> None:
    phone = Phone(make_registrar())
    phone.authed(register())
    decision = phone.authed(register(contacts=(), cseq=2))
    assert decision.response.status == 200 and decision.changes == ()
    assert contact_lines(decision.response) == ["<sip:alice@192.0.2.10:5060;transport=udp>;expires=3600"]


def test_unregister_one_contact_then_all() -> None:
    phone = Phone(make_registrar())
    phone.authed(register(contacts=["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>"], cseq=1))
    one = phone.authed(register(contacts=["<sip:alice@192.0.2.10>;expires=0"], cseq=2))
    assert one.response.status == 200
    assert [type(c) for c in one.changes] == [RemoveBinding]
    assert contact_lines(one.response) == ["<sip:alice@192.0.2.11>;expires=3600"]
    everything = phone.authed(register(contacts=["*"], expires="0", cseq=3))
    assert everything.response.status == 200
    assert everything.changes == (RemoveAllBindings(aor="sip:alice@example.com"),)
    assert contact_lines(everything.response) == [] and phone.contacts() == []


def test_expires_header_zero_removes_the_contacts_listed() -> None:
    phone = Phone(make_registrar())
    phone.authed(register(contacts=["<sip:alice@192.0.2.10>"], cseq=1))
    decision = phone.authed(register(contacts=["<sip:ALICE@192.0.2.10>", "<sip:alice@192.0.2.10>"], expires="0", cseq=2))
    assert decision.response.status == 200 and phone.contacts() == []


def test_unregister_unknown_contact_is_fine() -> None:
    decision = Phone(make_registrar()).authed(register(contacts=["<sip:alice@192.0.2.99>;expires=0"]))
    assert decision.response.status == 200 and decision.changes == ()


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [(["*"], None), (["*"], "60"), (["*", "<sip:alice@192.0.2.10>"], "0")],
)
def test_star_needs_expires_zero_and_stands_alone(contacts: list[str], expires: str | None) -> None:
    decision = Phone(make_registrar()).authed(register(contacts=contacts, expires=expires))
    assert decision.response.status == 400 and decision.changes == ()


def test_too_brief_interval_gets_423_with_min_expires() -> None:
    decision = Phone(make_registrar(min_expires=60)).authed(register(contacts=["<sip:alice@192.0.2.10>;expires=30"]))
    assert decision.response.status == 423
    assert decision.response.headers.get("Min-Expires") == "60" and decision.changes == ()
    header = Phone(make_registrar()).authed(register(expires="59"))
    assert header.response.status == 423


def test_expires_sources_and_clamping() -> None:
    phone = Phone(make_registrar(max_expires=7200))
    decision = phone.authed(
        register(contacts=["<sip:alice@192.0.2.10>;expires=100000", "<sip:alice@192.0.2.11>", "<sip:alice@192.0.2.12>;expires=90"],
                 expires="300")
    )
    assert contact_lines(decision.response) == [
        "<sip:alice@192.0.2.10>;expires=7200",
        "<sip:alice@192.0.2.11>;expires=300",
        "<sip:alice@192.0.2.12>;expires=90",
    ]


@pytest.mark.parametrize("contact", ["<sip:alice@192.0.2.10>;expires=soon", "<sip:alice@bad host>", "<sip:alice@192.0.2.10"])
def test_malformed_contact_or_expires_gets_400(contact: str) -> None:
    decision = Phone(make_registrar()).authed(register(contacts=[contact]))
    assert decision.response.status == 400 and decision.changes == ()


def test_bindings_expire() -> None:
    phone = Phone(make_registrar())
    phone.authed(register(expires="120"))
    decision = phone.authed(register(contacts=(), cseq=2, call_id="other"), now=NOW + 121)
    assert contact_lines(decision.response) == []


# --- Call-ID / CSeq ordering (RFC 3261 §10.3 step 7) ------------------------------------


@pytest.mark.parametrize("cseq", [5, 4])
def test_same_call_id_with_cseq_not_higher_aborts_with_500(cseq: int) -> None:
    phone = Phone(make_registrar())
    phone.authed(register(cseq=5, expires="600"))
    stale = phone.authed(register(cseq=cseq, expires="3600"))
    assert stale.response.status == 500 and stale.changes == ()
    assert phone.bindings["sip:alice@example.com"][0].expires_at == NOW + 600
    star = phone.authed(register(contacts=["*"], expires="0", cseq=cseq))
    assert star.response.status == 500 and phone.contacts() != []


def test_other_call_id_may_have_any_cseq() -> None:
    phone = Phone(make_registrar())
    phone.authed(register(cseq=50, call_id="boot-1"))
    decision = phone.authed(register(cseq=1, call_id="boot-2", expires="600"))  # the phone rebooted
    assert decision.response.status == 200
    [change] = decision.changes
    assert isinstance(change, RefreshBinding) and change.binding.call_id == "boot-2"


# --- authentication failures and lockout ---------------------------------------------------


def test_five_bad_passwords_lock_the_source_out() -> None:
    registrar = make_registrar()
    phone = Phone(registrar)
    for attempt in range(4):
        decision = phone.authed(register(), password="guess", source=ATTACKER, now=NOW + attempt)
        assert decision.response.status == 401
        assert decision.events == (AuthFailed(source=ATTACKER[0], username="alice", reason="bad_response"),)
    fifth = phone.authed(register(), password="guess", source=ATTACKER, now=NOW + 4)
    assert fifth.response.status == 403 and fifth.response.headers.get("Retry-After") == "300"
    assert isinstance(fifth.events[-1], SourceLockedOut)
    # Locked: even the right password gets 403, before any challenge or digest.
    locked = phone.send(register(), source=ATTACKER, now=NOW + 10)
    assert locked.response.status == 403 and "WWW-Authenticate" not in locked.response.headers
    assert locked.response.headers.get("Retry-After") == "294"
    # Other sources are not affected.
    assert phone.authed(register(), source=PHONE, now=NOW + 10).response.status == 200
    # After lockout_s the source may try again.
    assert phone.send(register(), source=ATTACKER, now=NOW + 4 + 299).response.status == 403
    assert phone.authed(register(cseq=2), source=ATTACKER, now=NOW + 4 + 300).response.status == 200


def test_failures_outside_the_window_do_not_add_up() -> None:
    phone = Phone(make_registrar())
    for attempt in range(8):
        decision = phone.authed(register(), password="guess", source=ATTACKER, now=NOW + attempt * 20)
        assert decision.response.status == 401


def test_unknown_user_gets_the_same_401_and_counts_as_a_failure() -> None:
    phone = Phone(make_registrar())
    decision = phone.authed(register(user="mallory"), username="mallory", password="x", source=ATTACKER)
    assert decision.response.status == 401
    assert decision.events == (AuthFailed(source=ATTACKER[0], username="mallory", reason="unknown_user"),)
    assert phone.registrar.lockout.failures(ATTACKER[0], NOW) == 1


def test_stale_nonce_with_the_right_password_gets_stale_challenge() -> None:
    phone = Phone(make_registrar())
    first = phone.send(register())
    challenge = challenges_of(first.response)[0]
    credentials = build_credentials(challenge, username="alice", password="alice-pw", method="REGISTER", uri=f"sip:{REALM}")
    late = phone.send(with_authorization(register(), credentials.to_header()), now=NOW + 301)
    assert late.response.status == 401 and late.events == ()
    assert all(c.stale for c in challenges_of(late.response))
    wrong = build_credentials(challenge, username="alice", password="nope", method="REGISTER", uri=f"sip:{REALM}")
    bad = phone.send(with_authorization(register(), wrong.to_header()), now=NOW + 301)
    assert bad.response.status == 401 and not any(c.stale for c in challenges_of(bad.response))
    assert len(bad.events) == 1


def test_forged_nonce_is_rechallenged_without_counting_a_failure() -> None:
    phone = Phone(make_registrar())
    forged = DigestChallenge(realm=REALM, nonce="bm90LW91cnM", algorithm="SHA-256")
    credentials = build_credentials(forged, username="alice", password="alice-pw", method="REGISTER", uri=f"sip:{REALM}")
    decision = phone.send(with_authorization(register(), credentials.to_header()), source=ATTACKER)
    assert decision.response.status == 401 and decision.events == ()


def test_wrong_realm_gets_403_and_malformed_digest_gets_400() -> None:
    phone = Phone(make_registrar())
    challenge = DigestChallenge(realm="elsewhere.example", nonce="n", algorithm="MD5")
    other = build_credentials(challenge, username="alice", password="alice-pw", method="REGISTER", uri=f"sip:{REALM}")
    assert phone.send(register(authorization=[other.to_header()])).response.status == 403
    assert phone.send(register(authorization=['Digest username="alice", realm="example.com"'])).response.status == 400


def test_authorization_uri_must_be_the_request_uri() -> None:
    phone = Phone(make_registrar())
    challenge = challenges_of(phone.send(register()).response)[0]
    credentials = build_credentials(challenge, username="alice", password="alice-pw", method="REGISTER", uri="sip:other.example")
    assert phone.send(with_authorization(register(), credentials.to_header())).response.status == 400


# --- authorization of the address-of-record -------------------------------------------------


def test_user_may_not_register_someone_elses_aor() -> None:
    phone = Phone(make_registrar())
    decision = phone.authed(register(user="bob", from_user="bob"), username="alice")
    assert decision.response.status == 403 and decision.changes == ()


def test_third_party_registration_needs_permission() -> None:
    request = register(user="alice", from_user="bob")
    assert Phone(make_registrar()).authed(request, username="alice").response.status == 403
    allowed = Phone(make_registrar(allow_third_party=True)).authed(request, username="alice")
    assert allowed.response.status == 200


def test_custom_authorize_hook() -> None:
    registrar = make_registrar(authorize=lambda user, aor: user == "bob" and aor == "sip:alice@example.com")
    decision = Phone(registrar).authed(register(user="alice"), username="bob")
    assert decision.response.status == 200 and decision.bindings[0].username == "bob"


def test_aor_domain_files_every_host_under_one_aor() -> None:
    phone = Phone(make_registrar(domains=frozenset({REALM, "192.0.2.1"}), aor_domain=REALM))
    decision = phone.authed(register(to_host="192.0.2.1"))
    assert decision.response.status == 200 and decision.aor == "sip:alice@example.com"
    assert phone.contacts() == ["sip:alice@192.0.2.10:5060;transport=udp"]


def test_domain_not_served_gets_404() -> None:
    decision = Phone(make_registrar()).authed(register(to_host="elsewhere.example"), username="alice")
    assert decision.response.status == 404


def test_too_many_devices_gets_403() -> None:
    phone = Phone(make_registrar(max_bindings=2))
    contacts = [f"<sip:alice@192.0.2.{i}>" for i in (1, 2, 3)]
    assert phone.authed(register(contacts=contacts)).response.status == 403
    assert phone.authed(register(contacts=contacts[:2])).response.status == 200


def test_registrar_only_takes_register() -> None:
    request = register()
    request.method = "INVITE"
    with pytest.raises(ValueError):
        make_registrar().decide(request, source=PHONE, now=NOW, bindings=[], ha1s=None)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        RegistrarConfig(realm=REALM, min_expires=100, default_expires=50)
    with pytest.raises(ValueError):
        Registrar(RegistrarConfig(realm=REALM), nonces=NonceIssuer(SECRET, 30, realm="other"))


# --- RFC 4475 registrar cases ---------------------------------------------------------------

TORTURE = {
    # file: (username, contact as stored, contact params kept, transport)
    "regaut01.dat": ("j.user", None, (), "TCP"),
    "cparam01.dat": ("watson", "sip:+19725552222@gw1.example.net", (("unknownparam", None),), "UDP"),
    "cparam02.dat": ("watson", "sip:+19725552222@gw1.example.net;unknownparam", (), "UDP"),
    "regescrt.dat": ("user", "sip:user@example.com?Route=%3Csip:sip.example.com%3E", (), "UDP"),
    "dblreq.dat": ("j.user", "sip:j.user@host.example.com", (), "UDP"),
}


@pytest.mark.parametrize("name", sorted(TORTURE))
def test_torture_register_is_challenged_then_registered(name: str) -> None:
    path = TORTURE_DIR / name
    if not path.exists():
        pytest.skip(f"{path} is missing")
    username, contact, params, transport = TORTURE[name]
    request = parse_message(path.read_bytes())
    assert isinstance(request, SipRequest) and request.method == "REGISTER"
    phone = Phone(make_registrar())
    first = phone.send(request)
    assert first.response.status == 401
    assert [c.algorithm for c in challenges_of(first.response)] == ["SHA-256", "MD5"]
    decision = phone.authed(request, username=username)
    assert decision.response.status == 200, decision.response.reason
    if contact is None:
        assert decision.changes == () and contact_lines(decision.response) == []
        return
    [change] = decision.changes
    assert isinstance(change, AddBinding)
    assert change.binding.contact == contact
    assert change.binding.params == params
    assert change.binding.transport == transport
    [line] = contact_lines(decision.response)
    assert line.startswith(f"<{contact}>") and line.endswith(";expires=3600")
    again = parse_message(serialize(decision.response))
    assert isinstance(again, SipResponse)


def test_regaut01_unknown_scheme_alone_gets_our_challenge() -> None:
    request = parse_message((TORTURE_DIR / "regaut01.dat").read_bytes()) if (TORTURE_DIR / "regaut01.dat").exists() else None
    if request is None:
        pytest.skip("regaut01.dat is missing")
    assert isinstance(request, SipRequest)
    decision = Phone(make_registrar()).send(request)
    assert decision.response.status == 401 and decision.events == ()
    assert decision.response.headers.get_lines("WWW-Authenticate")[0].startswith("Digest ")


# --- the asyncio shell ------------------------------------------------------------------------


async def _ha1s(username: str) -> dict[str, str] | None:
    password = PASSWORDS.get(username)
    return ha1_set(username, REALM, password) if password is not None else None


async def test_service_ties_store_credentials_and_registrar() -> None:
    store = InMemoryBindingStore()
    events: list[object] = []
    service = RegistrarService(make_registrar(), store, _ha1s, on_event=events.append)
    first = await service.handle(register(), PHONE, NOW)
    assert first.status == 401
    challenge = challenges_of(first)[0]
    credentials = build_credentials(challenge, username="alice", password="alice-pw", method="REGISTER", uri=f"sip:{REALM}")
    ok = await service.handle(with_authorization(register(), credentials.to_header()), PHONE, NOW)
    assert ok.status == 200
    [binding] = await store.lookup("sip:alice@example.com", NOW)
    assert binding.received == PHONE
    bad = build_credentials(challenge, username="alice", password="nope", method="REGISTER", uri=f"sip:{REALM}")
    assert (await service.handle(with_authorization(register(cseq=2), bad.to_header()), ATTACKER, NOW)).status == 401
    assert events == [AuthFailed(source=ATTACKER[0], username="alice", reason="bad_response")]


class _BrokenStore(InMemoryBindingStore):
    async def apply(self, aor: str, changes: Sequence[object], now: float) -> None:  # type: ignore[override]
        raise ConnectionError("redis down")


async def test_service_answers_500_when_the_store_fails() -> None:
    service = RegistrarService(make_registrar(), _BrokenStore(), _ha1s)
    challenge = challenges_of(await service.handle(register(), PHONE, NOW))[0]
    credentials = build_credentials(challenge, username="alice", password="alice-pw", method="REGISTER", uri=f"sip:{REALM}")
    response = await service.handle(with_authorization(register(), credentials.to_header()), PHONE, NOW)
    assert response.status == 500 and response.headers.get("Retry-After") == "5"


def test_headers_helper_keeps_original_untouched() -> None:
    request = register()
    with_authorization(request, "Digest x=y")
    assert "Authorization" not in request.headers and isinstance(request.headers, Headers)
