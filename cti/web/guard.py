"""The aiohttp side of authentication: logins, the session of a request, and ending
sessions that no longer stand.

Owns reading credentials off a request (bearer header; `?token=` on websockets only;
the session cookie), the login flow around the throttle and the password check, the
re-check of a session's user against the directory on every authenticated request,
and closing the websockets of ended sessions. Must never decide who may do what:
`cti.web.auth` does, from the facts gathered here, and `cti.web.login_throttle`
decides on login attempts.

Routes call `session = await require(request, Permission.X)` (or wrap a handler taking
`(request, session)` in `@requires(Permission.X)`); a refusal is raised as `ApiError`
and answered as JSON by the `api_errors` middleware: 401 when there is no valid
session, 403 when the session may not do this.

Disabled users and changed passwords: the directory bumps the user's session epoch;
every authenticated request (HTTP or websocket upgrade) reads the user's row, so a
change made by `ctihub users` in another process ends the user's sessions on their
next request; open websockets are re-checked every `recheck_s` seconds and closed
(1008) when their session is gone. A change made through this hub's own API ends the
sessions and closes the sockets at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, web
from sqlalchemy.exc import SQLAlchemyError

from cti.agents.sessions import Session, SessionRegistry
from cti.directory.store import DirectoryStore
from cti.web.auth import (
    AccessRequest,
    AccountFacts,
    Credential,
    Permission,
    check_access,
    revocation_reason,
)
from cti.web.errors import ApiError
from cti.web.login_throttle import LoginThrottle, Verdict, Wait, source_key
from cti.web.throttle_store import Records, ThrottleStore, ThrottleUnavailable

__all__ = ["AUTH", "COOKIE", "CSRF_HEADER", "AuthOptions", "AuthService", "credential_of", "require", "requires"]

log = logging.getLogger("cti.auth")  # the audit trail of logins, lockouts and revocations

COOKIE = "ctihub_session"
CSRF_HEADER = "X-CSRF-Token"
RECHECK_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthOptions:
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    recheck_s: float = RECHECK_S  # how often open websockets' sessions are checked again


class AuthService:
    def __init__(
        self,
        *,
        sessions: SessionRegistry,
        directory: DirectoryStore,
        throttle: LoginThrottle,
        failures: ThrottleStore,
        recheck_s: float = RECHECK_S,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.directory = directory
        self.throttle = throttle
        self.failures = failures
        self.recheck_s = recheck_s
        # Wall-clock time for the throttle: its records may be shared through Redis by
        # processes whose monotonic clocks have nothing in common.
        self.wall_clock = wall_clock
        self._sockets: dict[web.WebSocketResponse, Session] = {}
        self._closing: set[asyncio.Task[None]] = set()

    # --- login ---------------------------------------------------------------------

    async def log_in(self, username: str, password: str, *, address: str | None) -> tuple[str, Session]:
        """A new session (token and session), or ApiError 401, 403, 429 or 503."""
        source = source_key(address)
        keys = ("user:" + username, "source:" + source)
        now = self.wall_clock()

        def count(records: Records) -> tuple[Verdict, Records]:
            verdict, by_username, by_source = self.throttle.attempt(
                username=username, source=source, by_username=records[0], by_source=records[1], now=now
            )
            return verdict, (by_username, by_source)

        try:
            verdict = await self.failures.update(keys, count, now)
        except ThrottleUnavailable as err:
            log.error("auth: login of %r refused, the throttle store is unavailable: %s", username, err)
            raise ApiError(
                503, "login_unavailable", "logins are paused: the login throttle's store is unreachable",
                headers={"Retry-After": "5"},
            ) from None
        if isinstance(verdict, Wait):
            seconds = max(1, math.ceil(verdict.retry_after_s))
            what = "this username" if verdict.scope == "username" else "this address"
            if verdict.locked:
                log.warning("auth: login of %r from %s refused: %s locked out for %d s more", username, address, verdict.scope, seconds)
                detail = f"too many failed logins for {what}: locked out; try again in {seconds} s"
            else:
                log.info("auth: login of %r from %s refused: slowed down for %d s", username, address, seconds)
                detail = f"too many failed logins for {what}: wait {seconds} s before trying again"
            raise ApiError(
                429, "login_locked" if verdict.locked else "login_throttled", detail,
                extra={"retry_after": seconds, "scope": verdict.scope}, headers={"Retry-After": str(seconds)},
            )
        user = await self.directory.check_password(username, password)
        if user is None:
            log.warning("auth: failed login for %r from %s", username, address)
            for scope in verdict.locks:
                key = username if scope == "username" else source
                log.warning("auth: %s %r locked out for %.0f s after too many failed logins", scope, key, self.throttle.lockout_s(scope))
            raise ApiError(401, "bad_credentials", "unknown user or wrong password")
        await self._forget_attempts(username, source, keys)
        if user.disabled:
            log.warning("auth: disabled user %r tried to log in from %s", username, address)
            raise ApiError(403, "account_disabled", "this account is disabled; an administrator can enable it")
        token, session = self.sessions.create(
            username=user.username, role=user.role, display_name=user.display_name, session_epoch=user.session_epoch
        )
        log.info("auth: %r (%s) logged in from %s", user.username, user.role, address)
        return token, session

    async def _forget_attempts(self, username: str, source: str, keys: tuple[str, str]) -> None:
        now = self.wall_clock()

        def forget(records: Records) -> tuple[None, Records]:
            return None, self.throttle.succeeded(
                username=username, source=source, by_username=records[0], by_source=records[1], now=now
            )

        try:
            await self.failures.update(keys, forget, now)
        except ThrottleUnavailable as err:
            # The user got in; the attempt stays counted until its record expires.
            log.warning("auth: could not clear the login failures of %r: %s", username, err)

    # --- sessions that no longer stand ----------------------------------------------

    async def confirm(self, session: Session) -> None:
        """Raise 401 unless the session's user is still enabled, with the same role and
        password; a session that fails ends, with every other one of the user's that
        fails the same way."""
        account = await self.directory.account(session.username)
        reason = revocation_reason(role=session.role, session_epoch=session.session_epoch, account=account)
        if reason is None:
            return
        self._end_sessions(session.username, account, reason)
        raise ApiError(401, "session_revoked", f"{reason}; log in again")

    async def revoke_user(self, username: str, reason: str) -> int:
        """End the user's sessions that no longer stand (all, when the account is gone or
        disabled) and close their websockets; returns how many sessions ended."""
        return self._end_sessions(username, await self.directory.account(username), reason)

    def _end_sessions(self, username: str, account: AccountFacts | None, reason: str) -> int:
        def keep(session: Session) -> bool:
            return revocation_reason(role=session.role, session_epoch=session.session_epoch, account=account) is None

        ended = self.sessions.revoke_user(username, keep=keep, reason=reason)
        self._close_sockets({s.key for s in ended}, WSCloseCode.POLICY_VIOLATION, f"session revoked: {reason}")
        if ended:
            log.warning("auth: ended %d session(s) of %r: %s", len(ended), username, reason)
        return len(ended)

    def log_out(self, token: str) -> None:
        session = self.sessions.revoke(token)
        if session is not None:
            self._close_sockets({session.key}, WSCloseCode.OK, "logged out")
            log.info("auth: %r logged out", session.username)

    # --- websockets ------------------------------------------------------------------

    def watch(self, socket: web.WebSocketResponse, session: Session) -> None:
        self._sockets[socket] = session

    def unwatch(self, socket: web.WebSocketResponse) -> None:
        self._sockets.pop(socket, None)

    async def recheck_sockets(self) -> int:
        """Close the open websockets whose session ended or whose user no longer stands;
        returns how many were closed. One directory query for all of them."""
        watched = list(self._sockets.items())
        if not watched:
            return 0
        accounts = await self.directory.accounts({s.username for _, s in watched})
        for socket, session in watched:
            account = accounts.get(session.username)
            reason = revocation_reason(role=session.role, session_epoch=session.session_epoch, account=account)
            if reason is not None:
                self._end_sessions(session.username, account, reason)
                # The session may have left the registry already (logged out elsewhere).
                self._close_sockets({session.key}, WSCloseCode.POLICY_VIOLATION, f"session revoked: {reason}")
            elif not self.sessions.is_live(session):
                self._close_sockets({session.key}, WSCloseCode.POLICY_VIOLATION, "session expired")
        return sum(1 for socket, _ in watched if socket not in self._sockets)

    async def run_rechecks(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_s)
            try:
                await self.recheck_sockets()
            except (SQLAlchemyError, OSError, TimeoutError) as exc:  # a database blip must not end the re-checks
                log.warning("auth: re-checking open websockets failed: %s", exc)

    def _close_sockets(self, keys: set[str], code: int, message: str) -> int:
        sockets = [socket for socket, session in self._sockets.items() if session.key in keys]
        for socket in sockets:
            self.unwatch(socket)
            # Not awaited here: a close waits for the peer's answer, and the request
            # that revoked the session should not.
            task = asyncio.create_task(self._close(socket, code, message))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return len(sockets)

    @staticmethod
    async def _close(socket: web.WebSocketResponse, code: int, message: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await socket.close(code=code, message=message.encode()[:120])

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self.failures.close()


AUTH = web.AppKey("auth", AuthService)


def credential_of(request: web.Request, *, allow_query: bool) -> tuple[Credential, str] | None:
    """The credential a request presents: Authorization header first, then `?token=`
    (websockets only: a token in a URL ends up in logs), then the cookie."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "bad_authorization", "the Authorization header must be 'Bearer <token>'")
        return Credential.BEARER, value.strip()
    if allow_query and (token := request.query.get("token")):
        return Credential.QUERY, token
    if token := request.cookies.get(COOKIE):
        return Credential.COOKIE, token
    return None


async def require(request: web.Request, permission: Permission | None, *, websocket: bool = False) -> Session:
    """The request's session when it may use `permission` (None: any logged-in user);
    else raise ApiError 401 (no valid session) or 403 (CSRF, origin, permission)."""
    auth = request.config_dict[AUTH]
    found = credential_of(request, allow_query=websocket)
    if found is None:
        raise ApiError(
            401, "not_logged_in",
            "log in first (POST /api/login), then send Authorization: Bearer <token> or the session cookie",
        )
    credential, token = found
    session = auth.sessions.resolve(token)
    if session is None:
        if (reason := auth.sessions.why_revoked(token)) is not None:
            raise ApiError(401, "session_revoked", f"{reason}; log in again")
        raise ApiError(401, "session_expired", "the session token is unknown, expired or logged out; log in again")
    await auth.confirm(session)
    denial = check_access(
        AccessRequest(
            role=session.role,
            permission=permission,
            credential=credential,
            method=request.method,
            websocket=websocket,
            csrf_expected=session.csrf_token,
            csrf_given=request.headers.get(CSRF_HEADER),
            origin=request.headers.get("Origin"),
            host=request.headers.get("Host"),
        )
    )
    if denial is not None:
        log.warning(
            "auth: %s %s refused for %r (%s): %s", request.method, request.path, session.username, session.role, denial.error
        )
        raise ApiError(denial.status, denial.error, denial.detail, extra=denial.extra)
    return session


GuardedHandler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def requires(permission: Permission | None) -> Callable[[GuardedHandler], Handler]:
    """A route that runs only for sessions that may use `permission`; the handler gets
    the session as its second argument."""

    def wrap(handler: GuardedHandler) -> Handler:
        async def route(request: web.Request) -> web.StreamResponse:
            return await handler(request, await require(request, permission))

        route.__name__ = handler.__name__
        route.__doc__ = handler.__doc__
        return route

    return wrap
