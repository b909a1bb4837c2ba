"""The registrar's policy: one REGISTER in, one decision out (RFC 3261 §10.3).

Owns the order of the registrar's checks (lockout, digest authentication, realm,
authorization of the address-of-record, Contact and Expires rules, Call-ID/CSeq
ordering), the response for each outcome, and the binding changes and security
events a REGISTER leads to. Must never do I/O or read a clock: the caller passes
`now`, the AOR's current bindings and the user's HA1 values (see `lookups`), then
applies `RegistrarDecision.changes` to its store and sends `.response`.

Choices, and why:
- Bad credentials for a known or unknown user get the same fresh 401 (no user
  enumeration) and count as a failure; a source over the lockout threshold gets 403
  with Retry-After, decided before any hashing.
- A wrong-realm Digest header gets 403: the phone is configured for another domain
  and a new challenge would not help. A malformed Digest header gets 400.
- A nonce that is forged or mangled earns a fresh 401 but no failure (nobody can
  guess a password with a nonce we never issued); an expired one whose response is
  right earns 401 with stale=true, which phones answer without asking the user.
- A lower or equal CSeq on the same Call-ID for an existing binding aborts the whole
  request with 500 and changes nothing (§10.3 step 7: all or nothing).
- More than `max_bindings` devices on one AOR: 403, so one account cannot fill the
  store.
- No per-nonce nonce-count tracking: nonces are stateless and short-lived, and a
  replayed REGISTER is also caught by the CSeq rule above.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate

from cti.registrar.bindings import (
    AddBinding,
    Binding,
    BindingChange,
    RefreshBinding,
    RemoveAllBindings,
    RemoveBinding,
    apply_changes,
    contact_key,
)
from cti.registrar.lockout import LockoutPolicy
from cti.sip._grammar import LWS, read_quoted
from cti.sip.digest import (
    ALGORITHMS,
    Algorithm,
    DigestChallenge,
    DigestCredentials,
    DigestError,
    NonceIssuer,
    parse_authorization,
    verify,
)
from cti.sip.errors import SipParseError
from cti.sip.message import SipRequest, SipResponse, build_error_response, build_response, new_tag
from cti.sip.uri import NameAddr, SipUri, parse_name_addr, parse_uri

__all__ = [
    "AuthFailed",
    "Lookups",
    "Registrar",
    "RegistrarConfig",
    "RegistrarDecision",
    "RegistrarEvent",
    "SourceLockedOut",
    "aor_of",
]

Address = tuple[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrarConfig:
    realm: str
    # Hosts the registrar is authoritative for (To host); empty: any host.
    domains: frozenset[str] = frozenset()
    default_expires: int = 3600
    min_expires: int = 60
    max_expires: int = 7200
    max_bindings: int = 10
    algorithms: tuple[Algorithm, ...] = ALGORITHMS  # preference order (RFC 8760 §2.4)
    allow_third_party: bool = False
    # (authenticated username, AOR) -> may this user register this AOR? Default: the
    # AOR's user part is the username.
    authorize: Callable[[str, str], bool] | None = None
    # When set, every AOR is filed under this domain, whatever host the phone put in
    # To (its IP address, a served alias): calls can then find `sip:user@aor_domain`.
    aor_domain: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires")
        if not self.algorithms or any(a not in ALGORITHMS for a in self.algorithms):
            raise ValueError(f"algorithms must be a non-empty subset of {ALGORITHMS}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthFailed:
    source: str
    username: str
    reason: str  # "bad_response" | "unknown_user"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceLockedOut:
    source: str
    username: str
    until: float


RegistrarEvent = AuthFailed | SourceLockedOut


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookups:
    """What the caller must fetch before `decide`: the AOR's bindings, the user's HA1s."""

    aor: str | None
    username: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrarDecision:
    response: SipResponse
    aor: str | None = None
    changes: tuple[BindingChange, ...] = ()
    events: tuple[RegistrarEvent, ...] = ()
    bindings: tuple[Binding, ...] = ()  # the AOR's bindings once `changes` are applied


def aor_of(uri: SipUri) -> str:
    """The canonical address-of-record: `sip:user@host`, host lowercased (sips too)."""
    if not uri.is_sip:
        return str(uri)
    user = f"{uri.user}@" if uri.user is not None else ""
    return f"sip:{user}{uri.host.lower()}"


def _raw_uri(value: str) -> str:
    """The Contact URI as the phone wrote it (parse_name_addr has vouched for `value`)."""
    s = value.strip(LWS)
    start = 0
    if s.startswith('"'):
        _, start = read_quoted(s, 0)
    lt = s.find("<", start)
    if lt >= 0:
        return s[lt + 1 : s.find(">", lt)]
    return s.partition(";")[0].strip(LWS)


class _Reject(Exception):
    def __init__(self, status: int, hint: str | None = None, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(hint)
        self.status, self.hint, self.headers = status, hint, list(headers)


class Registrar:
    """Stateless apart from the lockout counters it is handed."""

    def __init__(
        self,
        config: RegistrarConfig,
        *,
        nonces: NonceIssuer,
        lockout: LockoutPolicy | None = None,
    ) -> None:
        if nonces.realm != config.realm:
            raise ValueError("the NonceIssuer must be bound to the registrar's realm")
        self.config = config
        self.nonces = nonces
        self.lockout = lockout if lockout is not None else LockoutPolicy()
        self._opaque = nonces.opaque()

    # --- before deciding ---------------------------------------------------------------

    def _credentials(self, request: SipRequest) -> tuple[DigestCredentials | None, bool]:
        """Our realm's Digest credentials, and whether other Digest credentials were seen."""
        foreign = False
        for value in request.headers.get_lines("Authorization"):
            credentials = parse_authorization(value)
            if credentials is None:
                continue  # another scheme (RFC 4475 regaut01): as if absent
            if credentials.realm == self.config.realm:
                return credentials, foreign
            foreign = True
        return None, foreign

    def aor(self, uri: SipUri) -> str:
        if self.config.aor_domain is not None and uri.is_sip and uri.user is not None:
            return f"sip:{uri.user}@{self.config.aor_domain.lower()}"
        return aor_of(uri)

    def lookups(self, request: SipRequest) -> Lookups:
        try:
            aor: str | None = self.aor(request.to.uri)
        except SipParseError:
            aor = None
        try:
            credentials, _ = self._credentials(request)
        except DigestError:
            credentials = None
        return Lookups(aor=aor, username=credentials.username if credentials else None)

    # --- the decision ------------------------------------------------------------------

    def challenges(self, now: float, *, stale: bool = False) -> list[DigestChallenge]:
        return [
            DigestChallenge(
                realm=self.config.realm,
                nonce=self.nonces.issue(now),
                opaque=self._opaque,
                algorithm=algorithm,
                qop="auth",
                stale=stale,
            )
            for algorithm in self.config.algorithms
        ]

    def _challenge(self, request: SipRequest, now: float, *, stale: bool = False) -> SipResponse:
        headers = [("WWW-Authenticate", c.to_header()) for c in self.challenges(now, stale=stale)]
        return build_error_response(request, 401, headers=headers)

    def decide(
        self,
        request: SipRequest,
        *,
        source: Address,
        now: float,
        bindings: Sequence[Binding],
        ha1s: Mapping[str, str] | None,
    ) -> RegistrarDecision:
        """Answer one REGISTER.

        `bindings` are the current bindings of `lookups(request).aor`; `ha1s` maps an
        algorithm ('MD5', 'SHA-256') to the HA1 of `lookups(request).username`, or is
        None when that user does not exist (or no username was sent).
        """
        if request.method != "REGISTER":
            raise ValueError(f"the registrar only takes REGISTER, not {request.method}")
        ip = source[0]
        wait = self.lockout.retry_after(ip, now)
        if wait > 0:
            return self._reject(request, _Reject(403, "too many failed authentications", [("Retry-After", str(math.ceil(wait)))]))
        try:
            credentials, foreign = self._credentials(request)
        except DigestError as exc:
            return self._reject(request, _Reject(400, f"Authorization: {exc}"))
        if credentials is None:
            if foreign:
                return self._reject(request, _Reject(403, "wrong realm"))
            return RegistrarDecision(response=self._challenge(request, now))
        username = credentials.username
        user_wait = self.lockout.user_retry_after(username, now)
        if user_wait > 0:
            return self._reject(request, _Reject(403, "user locked", [("Retry-After", str(math.ceil(user_wait)))]))
        algorithm = credentials.effective_algorithm
        if algorithm not in self.config.algorithms:
            return RegistrarDecision(response=self._challenge(request, now))
        status = self.nonces.check(credentials.nonce, now)
        if status == "invalid" or (credentials.opaque is not None and credentials.opaque != self._opaque):
            return RegistrarDecision(response=self._challenge(request, now))
        if not _same_uri(credentials.uri, request.uri):
            return self._reject(request, _Reject(400, "Authorization uri is not the Request-URI"))
        password_ha1 = None if ha1s is None else ha1s.get(algorithm)
        if ha1s is not None and password_ha1 is None:
            return RegistrarDecision(response=self._challenge(request, now))  # no HA1 kept for it
        valid = password_ha1 is not None and verify(
            credentials, method=request.method, password_ha1=password_ha1,
            algorithm="SHA-256" if algorithm == "SHA-256" else "MD5",
        )
        if not valid:
            return self._failed(request, ip, username, now, "unknown_user" if ha1s is None else "bad_response")
        self.lockout.record_success(ip, username, now)
        if status == "stale":
            return RegistrarDecision(response=self._challenge(request, now, stale=True))
        try:
            return self._register(request, source=source, now=now, bindings=bindings, username=username)
        except _Reject as reject:
            return self._reject(request, reject)

    def _failed(self, request: SipRequest, ip: str, username: str, now: float, reason: str) -> RegistrarDecision:
        events: list[RegistrarEvent] = [AuthFailed(source=ip, username=username, reason=reason)]
        if self.lockout.record_failure(ip, username, now):
            until = now + self.lockout.lockout_s
            events.append(SourceLockedOut(source=ip, username=username, until=until))
            reject = _Reject(403, "too many failed authentications", [("Retry-After", str(math.ceil(self.lockout.lockout_s)))])
            return RegistrarDecision(response=self._build(request, reject), events=tuple(events))
        return RegistrarDecision(response=self._challenge(request, now), events=tuple(events))

    @staticmethod
    def _build(request: SipRequest, reject: _Reject) -> SipResponse:
        return build_error_response(request, reject.status, reject.hint, headers=reject.headers)

    def _reject(self, request: SipRequest, reject: _Reject) -> RegistrarDecision:
        return RegistrarDecision(response=self._build(request, reject))

    def _may_register(self, username: str, aor: str, to: NameAddr) -> bool:
        if self.config.authorize is not None:
            return self.config.authorize(username, aor)
        return to.uri.user == username

    def _register(
        self,
        request: SipRequest,
        *,
        source: Address,
        now: float,
        bindings: Sequence[Binding],
        username: str,
    ) -> RegistrarDecision:
        try:
            to, from_ = request.to, request.from_
            call_id, (cseq, _) = request.call_id, request.cseq
        except SipParseError as exc:
            raise _Reject(400, exc.reason) from None
        aor = self.aor(to.uri)
        if not to.uri.is_sip:
            raise _Reject(404, "address-of-record is not a SIP URI")
        if not self._may_register(username, aor, to):
            raise _Reject(403, "not allowed to register this address")
        if aor_of(from_.uri) != aor_of(to.uri) and not self.config.allow_third_party:
            raise _Reject(403, "third-party registration not allowed")
        if self.config.domains and to.uri.host.lower() not in self.config.domains:
            raise _Reject(404, "domain not served here")
        changes = self._changes(request, aor=aor, source=source, now=now, bindings=bindings,
                                username=username, call_id=call_id, cseq=cseq)
        after = apply_changes(bindings, changes, now)
        if len(after) > self.config.max_bindings:
            raise _Reject(403, f"more than {self.config.max_bindings} devices")
        headers = [("Contact", _contact_header(b, now)) for b in after]
        headers.append(("Date", formatdate(now, usegmt=True)))  # §10.3 step 8
        response = build_response(request, 200, to_tag=new_tag(), headers=headers)
        return RegistrarDecision(response=response, aor=aor, changes=tuple(changes), bindings=tuple(after))

    def _expires_header(self, request: SipRequest) -> int | None:
        values = request.headers.get_lines("Expires")
        if not values:
            return None
        if len(values) > 1 or not values[0].isdigit() or not values[0].isascii():
            raise _Reject(400, "malformed Expires")
        return int(values[0])

    def _changes(
        self,
        request: SipRequest,
        *,
        aor: str,
        source: Address,
        now: float,
        bindings: Sequence[Binding],
        username: str,
        call_id: str,
        cseq: int,
    ) -> list[BindingChange]:
        header_expires = self._expires_header(request)
        values = request.headers.get_all("Contact")
        if "*" in values:
            # §10.3 step 6: '*' alone, and only to remove everything.
            if len(values) != 1 or header_expires != 0:
                raise _Reject(400, "Contact: * needs Expires: 0 and no other Contact")
            for b in bindings:
                if b.call_id == call_id and cseq <= b.cseq:
                    raise _Reject(500, "out-of-order CSeq")
            return [RemoveAllBindings(aor=aor)]
        by_key = {b.key: b for b in bindings}
        try:
            transport = request.top_via.transport
        except SipParseError:
            transport = "UDP"
        changes: list[BindingChange] = []
        for value in values:
            try:
                contact = parse_name_addr(value)
            except SipParseError as exc:
                raise _Reject(400, f"Contact: {exc.reason}") from None
            expires = self._expires_of(contact, header_expires)
            key = contact_key(contact.uri)
            existing = by_key.get(key)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                raise _Reject(500, "out-of-order CSeq")
            if expires == 0:
                if existing is not None:
                    changes.append(RemoveBinding(aor=aor, key=key))
                    del by_key[key]
                continue
            binding = Binding(
                aor=aor,
                contact=_raw_uri(value),
                key=key,
                params=tuple(p for p in contact.params if p[0].lower() != "expires"),
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                received=(source[0], source[1]),
                transport=transport,
                username=username,
                registered_at=existing.registered_at if existing is not None else now,
            )
            changes.append(RefreshBinding(binding=binding) if existing is not None else AddBinding(binding=binding))
            by_key[key] = binding
        return changes

    def _expires_of(self, contact: NameAddr, header_expires: int | None) -> int:
        text = contact.param("expires")
        if text is not None:
            if not text.isdigit() or not text.isascii() or len(text) > 10:
                raise _Reject(400, "malformed expires parameter")
            expires = int(text)
        elif header_expires is not None:
            expires = header_expires
        else:
            expires = self.config.default_expires
        if 0 < expires < self.config.min_expires:
            raise _Reject(423, None, [("Min-Expires", str(self.config.min_expires))])
        return min(expires, self.config.max_expires)


def _same_uri(a: str, b: str) -> bool:
    """Does the Authorization `uri` name the Request-URI's target? Scheme, user, host and
    port must agree; URI parameters are not compared, because phones in the field add
    `;transport=udp` to one and not the other (the digest still covers the uri text)."""
    if a == b:
        return True
    try:
        x, y = parse_uri(a), parse_uri(b)
    except SipParseError:
        return False
    return (x.scheme, x.user, x.host.lower(), x.port or 5060) == (y.scheme, y.user, y.host.lower(), y.port or 5060)


def _contact_header(binding: Binding, now: float) -> str:
    params = "".join(f";{n}" if v is None else f";{n}={v}" for n, v in binding.params)
    return f"<{binding.contact}>{params};expires={binding.expires_in(now)}"
