"""Login sessions and the live websocket connections of each user.

A session token is an opaque random string handed out at login; the hub keeps only its
SHA-256, so a leaked memory dump or log does not give usable tokens. One user may have
several websockets (two tabs, a desk and a laptop): messages go to all of them.
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


class Socket(Protocol):
    async def send_str(self, data: str) -> None: ...


@dataclass(slots=True, kw_only=True)
class Session:
    username: str
    role: str
    display_name: str
    expires_at: float


@dataclass
class SessionRegistry:
    clock: Callable[[], float]
    _sessions: dict[str, Session] = field(default_factory=dict)
    _sockets: dict[str, set[Socket]] = field(default_factory=dict)

    def create(self, *, username: str, role: str, display_name: str) -> str:
        token = secrets.token_urlsafe(32)
        self._sessions[_digest(token)] = Session(
            username=username, role=role, display_name=display_name, expires_at=self.clock() + SESSION_TTL_S
        )
        return token

    def resolve(self, token: str) -> Session | None:
        session = self._sessions.get(_digest(token))
        if session is None:
            return None
        if session.expires_at < self.clock():
            del self._sessions[_digest(token)]
            return None
        return session

    def revoke(self, token: str) -> None:
        self._sessions.pop(_digest(token), None)

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
