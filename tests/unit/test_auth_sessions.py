"""The session registry: tokens kept as digests, a CSRF token per session, ending the
sessions of one user, and expiry."""

from __future__ import annotations

from cti.agents.sessions import SESSION_TTL_S, SessionRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_has_its_own_csrf_token_and_is_found_by_its_token_only() -> None:
    registry = SessionRegistry(clock=Clock())
    token, session = registry.create(username="anna", role="agent", display_name="Anna", session_epoch=2)
    other_token, other = registry.create(username="anna", role="agent", display_name="Anna")
    assert registry.resolve(token) is session and registry.resolve(other_token) is other
    assert session.csrf_token and other.csrf_token and session.csrf_token != other.csrf_token
    assert session.csrf_token != token and session.session_epoch == 2
    assert token not in repr(registry._sessions)  # only digests are kept
    assert registry.resolve("guess") is None


def test_sessions_expire() -> None:
    clock = Clock()
    registry = SessionRegistry(clock=clock)
    token, session = registry.create(username="anna", role="agent", display_name="Anna")
    clock.now += SESSION_TTL_S - 1
    assert registry.is_live(session) and registry.resolve(token) is session
    clock.now += 2
    assert not registry.is_live(session)
    assert registry.resolve(token) is None


def test_expired_sessions_nobody_presents_are_purged() -> None:
    clock = Clock()
    registry = SessionRegistry(clock=clock)
    for n in range(5):
        registry.create(username=f"u{n}", role="agent", display_name="")
    clock.now += SESSION_TTL_S + 1
    registry.create(username="late", role="agent", display_name="")
    assert [s.username for s in registry._sessions.values()] == ["late"]


def test_revoke_user_ends_that_users_sessions_except_those_kept() -> None:
    registry = SessionRegistry(clock=Clock())
    old_token, old = registry.create(username="anna", role="agent", display_name="", session_epoch=1)
    new_token, new = registry.create(username="anna", role="agent", display_name="", session_epoch=2)
    ben_token, _ = registry.create(username="ben", role="agent", display_name="")
    ended = registry.revoke_user("anna", keep=lambda s: s.session_epoch == 2)
    assert ended == [old]
    assert registry.resolve(old_token) is None and registry.resolve(new_token) is new
    assert not registry.is_live(old) and registry.is_live(new)
    assert registry.revoke_user("anna") == [new]
    assert registry.resolve(ben_token) is not None


def test_revoke_one_token() -> None:
    registry = SessionRegistry(clock=Clock())
    token, session = registry.create(username="anna", role="agent", display_name="")
    assert registry.revoke(token) is session
    assert registry.revoke(token) is None and registry.resolve(token) is None


def test_a_revoked_session_tells_why_until_it_would_have_expired() -> None:
    clock = Clock()
    registry = SessionRegistry(clock=clock)
    token, _ = registry.create(username="anna", role="agent", display_name="")
    logged_out, _ = registry.create(username="anna", role="agent", display_name="")
    registry.revoke(logged_out)
    registry.revoke_user("anna", reason="the account is disabled")
    assert registry.resolve(token) is None
    assert registry.why_revoked(token) == "the account is disabled"
    assert registry.why_revoked(logged_out) is None  # a logout is no revocation
    clock.now += SESSION_TTL_S + 1
    assert registry.why_revoked(token) is None
