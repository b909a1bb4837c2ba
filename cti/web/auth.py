"""Who may do what: the permission vocabulary, the role table, and the checks a request
must pass once its session is known (CSRF, websocket origin, permission).

Owns every authorization decision of the HTTP and websocket API, as data and pure
functions, so that the whole policy can be read (and tested) in one place. Must never
do I/O, read a clock or import aiohttp: `cti.web.guard` gathers the facts of a request
and asks `check_access`; routes ask for a `Permission`, never for a role.

Choices, and why:
- Routes name permissions, not roles: adding a role (say "team lead") is one line in
  `ROLE_PERMISSIONS`, not a hunt through every route.
- "Masked" customer reads are `customer.read` without `customer.read_sensitive`: the
  route that assembles a customer asks for the second to decide what to unmask.
- Admin holds every permission but `agent.desktop`: the desktop is a seat in routing
  (queues, skills, offered calls) that only users with the agent role have, not a
  privilege to grant.
- CSRF: a cookie is an ambient credential (the browser adds it to any request to the
  hub), so a cookie-authenticated state-changing request must also carry the
  session's CSRF token in `X-CSRF-Token`, which another site cannot read. A bearer
  token or a `?token=` is never sent by the browser on its own, so those are exempt.
- Websocket upgrades are GETs that browsers send cross-origin with the cookie; with a
  cookie the `Origin` must be the hub's own. No `Origin` means no browser, and
  cross-site websocket hijacking needs a browser, so that is let through.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol
from urllib.parse import urlsplit

__all__ = [
    "ROLE_PERMISSIONS",
    "UNSAFE_METHODS",
    "AccessRequest",
    "AccountFacts",
    "Credential",
    "Denial",
    "Permission",
    "check_access",
    "may",
    "permissions_of",
    "revocation_reason",
    "same_origin",
]


class Permission(enum.StrEnum):
    AGENT_DESKTOP = "agent.desktop"  # the agent websocket: own state, offers, calls
    CUSTOMER_READ = "customer.read"  # customer cards and search, sensitive fields masked
    CUSTOMER_READ_SENSITIVE = "customer.read_sensitive"  # unmasked KYC, documents, accounts
    WALLBOARD_READ = "wallboard.read"  # live queue and agent statistics
    AGENT_STATE_MANAGE = "agent.state.manage"  # set other agents' states (force away, log out)
    RECORDINGS_PLAY = "recordings.play"
    RECORDINGS_EVALUATE = "recordings.evaluate"  # QA scorecards and timestamped comments
    RECORDINGS_AUDIT = "recordings.audit"  # the recordings access log, integrity reports
    EVALUATIONS_READ_OWN = "evaluations.read_own"  # an agent reads the QA evaluations of their own calls
    QA_FORMS_MANAGE = "qa.forms.manage"  # define and retire QA evaluation forms
    CRM_OUTBOX_ADMIN = "crm.outbox.admin"  # inspect, retry and drop CRM deliveries
    USERS_MANAGE = "users.manage"  # list, enable and disable users
    ROUTING_CONFIGURE = "routing.configure"  # queues, skills, strategies
    AUDIT_READ = "audit.read"  # who was shown which customer's personal data
    RECORDINGS_RETAIN = "recordings.retention"  # legal holds and retention extensions


P = Permission

ROLE_PERMISSIONS: Mapping[str, frozenset[Permission]] = MappingProxyType(
    {
        "agent": frozenset({P.AGENT_DESKTOP, P.CUSTOMER_READ, P.EVALUATIONS_READ_OWN}),
        "supervisor": frozenset({P.WALLBOARD_READ, P.AGENT_STATE_MANAGE, P.CUSTOMER_READ, P.RECORDINGS_PLAY}),
        "qa": frozenset({P.RECORDINGS_PLAY, P.RECORDINGS_EVALUATE, P.CUSTOMER_READ}),
        "admin": frozenset(Permission) - {P.AGENT_DESKTOP},
    }
)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def permissions_of(role: str) -> frozenset[Permission]:
    """An unknown role (a row edited by hand, a role from a newer hub) may do nothing."""
    return ROLE_PERMISSIONS.get(role, frozenset())


def may(role: str, permission: Permission) -> bool:
    return permission in permissions_of(role)


class Credential(enum.Enum):
    BEARER = "bearer"  # Authorization: Bearer <token>
    QUERY = "query"  # ?token=<token>, on the websocket only
    COOKIE = "cookie"  # the ctihub_session cookie


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRequest:
    """The facts of one request whose session is already known to be valid."""

    role: str
    permission: Permission | None  # None: any logged-in user
    credential: Credential
    method: str
    websocket: bool
    csrf_expected: str
    csrf_given: str | None  # the X-CSRF-Token header
    origin: str | None  # the Origin header
    host: str | None  # the Host header


@dataclass(frozen=True, slots=True, kw_only=True)
class Denial:
    status: int
    error: str  # stable slug
    detail: str
    extra: Mapping[str, str] = field(default_factory=dict)


def check_access(request: AccessRequest) -> Denial | None:
    """None when the request may go on; else why not, as status, slug and detail.

    Ambient-credential checks come before the permission: a forged request learns
    nothing about what the victim's role may do."""
    if request.credential is Credential.COOKIE:
        if request.websocket:
            if not same_origin(request.origin, request.host):
                return Denial(
                    status=403,
                    error="bad_origin",
                    detail=f"a websocket opened with the session cookie must come from the hub's own origin; got {request.origin!r}",
                )
        elif request.method.upper() in UNSAFE_METHODS and not _csrf_matches(request.csrf_expected, request.csrf_given):
            return Denial(
                status=403,
                error="csrf_failed",
                detail="a request authenticated by the session cookie must carry the session's X-CSRF-Token header "
                "(from POST /api/login or GET /api/me)",
            )
    if request.permission is not None and not may(request.role, request.permission):
        return Denial(
            status=403,
            error="forbidden",
            detail=f"the {request.role} role lacks the permission {request.permission.value}",
            extra={"permission": request.permission.value, "role": request.role},
        )
    return None


def _csrf_matches(expected: str, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


_DEFAULT_PORTS = {"http": "80", "https": "443"}


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether an Origin header names the host the request was sent to.

    Compares host and port only, not the scheme: behind a TLS-terminating proxy the
    hub sees http while the browser's origin is https."""
    if origin is None:
        return True
    if not host or origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc or parts.path not in ("", "/"):
        return False
    default = _DEFAULT_PORTS[parts.scheme]
    return _without_port(parts.netloc.lower(), default) == _without_port(host.lower(), default)


def _without_port(netloc: str, default: str) -> str:
    return netloc[: -len(default) - 1] if netloc.endswith(":" + default) else netloc


class AccountFacts(Protocol):
    """What of the user's row decides whether a session issued earlier still stands."""

    @property
    def role(self) -> str: ...

    @property
    def disabled(self) -> bool: ...

    @property
    def session_epoch(self) -> int: ...


def revocation_reason(*, role: str, session_epoch: int, account: AccountFacts | None) -> str | None:
    """Why a session issued with `role` and `session_epoch` no longer stands, or None."""
    if account is None:
        return "the account no longer exists"
    if account.disabled:
        return "the account is disabled"
    if account.session_epoch != session_epoch:
        return "the password was changed or the account disabled since this login"
    if account.role != role:
        return "the account's role changed since this login"
    return None
