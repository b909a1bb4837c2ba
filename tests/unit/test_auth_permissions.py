"""The permission table and the access checks of cti.web.auth, as tables."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cti.directory.store import ROLES
from cti.web.auth import (
    ROLE_PERMISSIONS,
    AccessRequest,
    Credential,
    Permission,
    check_access,
    may,
    permissions_of,
    revocation_reason,
    same_origin,
)

P = Permission

# The table as the product describes it, written out once more on purpose: a change
# to cti/web/auth.py must be a change here too.
EXPECTED = {
    "agent": {P.AGENT_DESKTOP, P.CUSTOMER_READ, P.EVALUATIONS_READ_OWN},
    "supervisor": {P.WALLBOARD_READ, P.AGENT_STATE_MANAGE, P.CUSTOMER_READ, P.RECORDINGS_PLAY},
    "qa": {P.RECORDINGS_PLAY, P.RECORDINGS_EVALUATE, P.CUSTOMER_READ},
    "admin": {
        P.CUSTOMER_READ, P.CUSTOMER_READ_SENSITIVE, P.WALLBOARD_READ, P.AGENT_STATE_MANAGE, P.RECORDINGS_PLAY,
        P.RECORDINGS_EVALUATE, P.RECORDINGS_AUDIT, P.CRM_OUTBOX_ADMIN, P.USERS_MANAGE, P.ROUTING_CONFIGURE,
        P.EVALUATIONS_READ_OWN, P.QA_FORMS_MANAGE, P.AUDIT_READ, P.RECORDINGS_RETAIN,
    },
}


def test_the_vocabulary_is_stable() -> None:
    assert sorted(p.value for p in Permission) == sorted(
        [
            "agent.desktop", "customer.read", "customer.read_sensitive", "wallboard.read", "agent.state.manage",
            "recordings.play", "recordings.evaluate", "recordings.audit", "crm.outbox.admin", "users.manage",
            "routing.configure", "evaluations.read_own", "qa.forms.manage", "audit.read", "recordings.retention",
        ]
    )


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_role_table(role: str) -> None:
    assert set(permissions_of(role)) == EXPECTED[role]


@pytest.mark.parametrize(("role", "permission"), [(r, p) for r in EXPECTED for p in Permission])
def test_may_follows_the_table(role: str, permission: Permission) -> None:
    assert may(role, permission) is (permission in EXPECTED[role])


def test_every_role_of_the_directory_has_a_row_and_nothing_else_does() -> None:
    assert set(ROLE_PERMISSIONS) == set(ROLES)


def test_every_permission_is_held_by_someone() -> None:
    held = set().union(*ROLE_PERMISSIONS.values())
    assert held == set(Permission)


def test_only_admin_sees_sensitive_customer_fields_and_only_agents_take_calls() -> None:
    assert [r for r in ROLES if may(r, P.CUSTOMER_READ_SENSITIVE)] == ["admin"]
    assert [r for r in ROLES if may(r, P.AGENT_DESKTOP)] == ["agent"]
    assert all(may(r, P.CUSTOMER_READ) for r in ROLES)


def test_only_admin_defines_qa_forms_and_agents_read_only_their_own_evaluations() -> None:
    assert [r for r in ROLES if may(r, P.QA_FORMS_MANAGE)] == ["admin"]
    assert not may("agent", P.RECORDINGS_PLAY) and not may("agent", P.RECORDINGS_EVALUATE)
    assert may("agent", P.EVALUATIONS_READ_OWN)
    assert [r for r in ROLES if may(r, P.RECORDINGS_EVALUATE)] == ["qa", "admin"]


def test_an_unknown_role_may_do_nothing() -> None:
    assert permissions_of("root") == frozenset()
    assert permissions_of("") == frozenset()


def _request(**overrides: object) -> AccessRequest:
    fields: dict[str, object] = {
        "role": "admin",
        "permission": P.USERS_MANAGE,
        "credential": Credential.BEARER,
        "method": "GET",
        "websocket": False,
        "csrf_expected": "csrf-abc",
        "csrf_given": None,
        "origin": None,
        "host": "hub.example:8080",
    }
    fields.update(overrides)
    return AccessRequest(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    name: str
    overrides: dict[str, object]
    error: str | None


CASES = [
    Case("bearer GET", {}, None),
    Case("bearer POST needs no CSRF token", {"method": "POST"}, None),
    Case("cookie GET needs no CSRF token", {"credential": Credential.COOKIE}, None),
    Case("cookie POST without token", {"credential": Credential.COOKIE, "method": "POST"}, "csrf_failed"),
    Case("cookie POST with a wrong token", {"credential": Credential.COOKIE, "method": "POST", "csrf_given": "nope"}, "csrf_failed"),
    Case("cookie POST with an empty token", {"credential": Credential.COOKIE, "method": "POST", "csrf_given": ""}, "csrf_failed"),
    Case("cookie post, lower-case method", {"credential": Credential.COOKIE, "method": "post"}, "csrf_failed"),
    Case("cookie POST with the token", {"credential": Credential.COOKIE, "method": "POST", "csrf_given": "csrf-abc"}, None),
    Case("cookie PUT", {"credential": Credential.COOKIE, "method": "PUT"}, "csrf_failed"),
    Case("cookie PATCH", {"credential": Credential.COOKIE, "method": "PATCH"}, "csrf_failed"),
    Case("cookie DELETE", {"credential": Credential.COOKIE, "method": "DELETE"}, "csrf_failed"),
    Case("session without a CSRF token never matches", {"credential": Credential.COOKIE, "method": "POST", "csrf_expected": "", "csrf_given": ""}, "csrf_failed"),
    Case("cookie websocket from a foreign origin", {"credential": Credential.COOKIE, "websocket": True, "origin": "https://evil.example"}, "bad_origin"),
    Case("cookie websocket from a null origin", {"credential": Credential.COOKIE, "websocket": True, "origin": "null"}, "bad_origin"),
    Case("cookie websocket from the hub's origin", {"credential": Credential.COOKIE, "websocket": True, "origin": "http://hub.example:8080"}, None),
    Case("cookie websocket without Origin (not a browser)", {"credential": Credential.COOKIE, "websocket": True}, None),
    Case("query-token websocket from anywhere", {"credential": Credential.QUERY, "websocket": True, "origin": "https://evil.example"}, None),
    Case("bearer websocket from anywhere", {"websocket": True, "origin": "https://evil.example"}, None),
    Case("wrong role", {"role": "qa"}, "forbidden"),
    Case("no permission needed", {"role": "qa", "permission": None}, None),
    Case("CSRF before permission", {"role": "qa", "credential": Credential.COOKIE, "method": "POST"}, "csrf_failed"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_check_access(case: Case) -> None:
    denial = check_access(_request(**case.overrides))
    assert (denial.error if denial else None) == case.error
    if denial is not None:
        assert denial.status == 403 and denial.detail


def test_a_forbidden_answer_names_the_permission_and_the_role() -> None:
    denial = check_access(_request(role="supervisor", permission=P.RECORDINGS_AUDIT))
    assert denial is not None
    assert denial.extra == {"permission": "recordings.audit", "role": "supervisor"}
    assert "recordings.audit" in denial.detail and "supervisor" in denial.detail


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        (None, "hub:8080", True),
        ("http://hub:8080", "hub:8080", True),
        ("https://hub:8080", "hub:8080", True),  # TLS ends at a proxy
        ("http://HUB:8080", "hub:8080", True),
        ("http://hub", "hub:80", True),
        ("https://hub", "hub:443", True),
        ("https://hub:443", "hub", True),
        ("http://hub:8081", "hub:8080", False),
        ("http://hub.evil:8080", "hub:8080", False),
        ("http://evil/hub:8080", "hub:8080", False),
        ("null", "hub:8080", False),
        ("ws://hub:8080", "hub:8080", False),
        ("http://hub:8080", None, False),
        ("", "hub:8080", False),
    ],
)
def test_same_origin(origin: str | None, host: str | None, same: bool) -> None:
    assert same_origin(origin, host) is same


@dataclass(frozen=True)
class Row:
    role: str = "agent"
    disabled: bool = False
    session_epoch: int = 3


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (Row(), None),
        (None, "no longer exists"),
        (Row(disabled=True), "disabled"),
        (Row(session_epoch=4), "password was changed"),
        (Row(role="admin"), "role changed"),
    ],
)
def test_a_session_stands_only_while_its_user_row_agrees(row: Row | None, reason: str | None) -> None:
    got = revocation_reason(role="agent", session_epoch=3, account=row)
    assert (got is None) if reason is None else (got is not None and reason in got)
