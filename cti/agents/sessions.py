"""Login sessions and the live websocket connections of each user.

A session token is an opaque random string handed out at login; the hub keeps only its
SHA-256, so a leaked memory dump or log does not give usable tokens. Each session also
carries its own CSRF token (session-bound, so a cookie planted by a sibling site cannot
come with a matching one) and the user's session epoch at login: the directory bumps
the epoch when a password changes or an account is disabled, which ends every session
issued before. One user may have several websockets (two tabs, a desk and a laptop):
messages go to all of them.

Sessions live in the process: with several hub processes, a token works only on the
process that issued it (the load balancer must keep a client on one process).
Must never keep a token itself, or decide who may do what (cti.web.auth does).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

SESSION_TTL_S = 12 * 3600
_PURGE_EVERY_S = 600.0
_MAX_REVOKED = 10_000


class Socket(Protocol):
    async def send_str(self, data: str) -> None: ...


@dataclass(slots=True, kw_only=True)
class Session:
    username: str
    role: str
    display_name: str
    expires_at: float
    key: str = ""  # SHA-256 of the token: how the registry finds the session
    csrf_token: str = ""
    session_epoch: int = 0


@dataclass
class SessionRegistry:
    clock: Callable[[], float]
    _sessions: dict[str, Session] = field(default_factory=dict)
    _sockets: dict[str, set[Socket]] = field(default_factory=dict)
    # Why revoked sessions ended (digest -> reason, expiry), so that a client that
    # presents one again learns why ("the account is disabled"), not just "unknown".
    _revoked: dict[str, tuple[str, float]] = field(default_factory=dict)
    _next_purge: float = 0.0

    def create(self, *, username: str, role: str, display_name: str, session_epoch: int = 0) -> tuple[str, Session]:
        """A new session; returns the token (shown to the client once) and the session."""
        now = self.clock()
        self._purge(now)
        token = secrets.token_urlsafe(32)
        session = Session(
            username=username,
            role=role,
            display_name=display_name,
            expires_at=now + SESSION_TTL_S,
            key=_digest(token),
            csrf_token=secrets.token_urlsafe(32),
            session_epoch=session_epoch,
        )
        self._sessions[session.key] = session
        return token, session

    def resolve(self, token: str) -> Session | None:
        key = _digest(token)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires_at < self.clock():
            del self._sessions[key]
            return None
        return session

    def is_live(self, session: Session) -> bool:
        """Still registered and not expired (a websocket asks this long after its login)."""
        return self._sessions.get(session.key) is session and session.expires_at >= self.clock()

    def revoke(self, token: str) -> Session | None:
        return self._sessions.pop(_digest(token), None)

    def revoke_user(
        self, username: str, *, keep: Callable[[Session], bool] | None = None, reason: str = ""
    ) -> list[Session]:
        """End the user's sessions (all, or those `keep` rejects); returns the ended ones.
        With a `reason`, `why_revoked` tells it to whoever presents one of them again."""
        ended = [s for s in self._sessions.values() if s.username == username and not (keep and keep(s))]
        for session in ended:
            del self._sessions[session.key]
            if reason:
                while len(self._revoked) >= _MAX_REVOKED:
                    del self._revoked[next(iter(self._revoked))]
                self._revoked[session.key] = (reason, session.expires_at)
        return ended

    def why_revoked(self, token: str) -> str | None:
        """The reason a revoked session ended, until it would have expired anyway."""
        entry = self._revoked.get(_digest(token))
        if entry is None or entry[1] < self.clock():
            return None
        return entry[0]

    def _purge(self, now: float) -> None:
        # Expired sessions nobody presents again would otherwise stay forever.
        if now < self._next_purge:
            return
        self._next_purge = now + _PURGE_EVERY_S
        for key in [k for k, s in self._sessions.items() if s.expires_at < now]:
            del self._sessions[key]
        for key in [k for k, (_, until) in self._revoked.items() if until < now]:
            del self._revoked[key]

    # --- websockets ------------------------------------------------------------------

    def attach(self, username: str, socket: Socket) -> None:
        self._sockets.setdefault(username, set()).add(socket)

    def detach(self, username: str, socket: Socket) -> int:
        """Remove one socket; returns how many the user still has open."""
        sockets = self._sockets.get(username, set())
        sockets.discard(socket)
        if not sockets:
            self._sockets.pop(username, None)
        return len(sockets)

    def connected(self, username: str) -> bool:
        return bool(self._sockets.get(username))

    def all_sockets(self) -> list[Socket]:
        return [s for sockets in self._sockets.values() for s in sockets]

    async def send(self, username: str, message: dict[str, Any]) -> int:
        """Send to every open socket of the user; returns how many got it."""
        text = json.dumps(message, separators=(",", ":"), default=str)
        sent = 0
        for socket in list(self._sockets.get(username, ())):
            try:
                await socket.send_str(text)
                sent += 1
            except (ConnectionError, RuntimeError, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                log.info("websocket of %s is gone: %s", username, exc)
                self.detach(username, socket)
        return sent


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
