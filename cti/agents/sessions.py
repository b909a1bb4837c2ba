"""Login sessions and the live websocket connections of each user.

A session token is an opaque random string handed out at login; the hub keeps only its
SHA-256, so a leaked memory dump or log does not give usable tokens. Each session also
carries its own CSRF token (session-bound, so a cookie planted by a sibling site cannot
come with a matching one) and the user's session epoch at login: the directory bumps
the epoch when a password changes or an account is disabled, which ends every session
issued before. One user may have several websockets (two tabs, a desk and a laptop):
messages go to all of them.

Every message to a user is numbered (`seq`, within the user's `stream`) and kept for a
while in the user's journal, sockets or not: a desktop whose connection dropped
reconnects with the last number it saw and gets what it missed (`replay_after`), so a
screen pop sent during a network blip is not lost. The journal is bounded in count and
age (`JOURNAL_MESSAGES`, `JOURNAL_S`); a desktop that was away longer learns that it
could not resume and rebuilds its view from `hello`.

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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

SESSION_TTL_S = 12 * 3600
_PURGE_EVERY_S = 600.0
_MAX_REVOKED = 10_000
# Long enough to cover the logout grace period (15 s) with room for a slow reconnect;
# short enough that a desktop coming back later rebuilds from `hello` instead of
# replaying a stale pop.
JOURNAL_S = 60.0
JOURNAL_MESSAGES = 200
# One encoder for every message: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


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


@dataclass(slots=True)
class _Journal:
    """One user's numbered messages of the last `JOURNAL_S` seconds."""

    stream: str
    seq: int = 0
    entries: deque[tuple[int, float, str]] = field(default_factory=lambda: deque(maxlen=JOURNAL_MESSAGES))

    def add(self, text: str, now: float) -> None:
        self.entries.append((self.seq, now, text))
        while self.entries and self.entries[0][1] < now - JOURNAL_S:
            self.entries.popleft()

    def after(self, seq: int, now: float) -> list[str] | None:
        """The messages numbered after `seq`, or None when some of them are gone."""
        while self.entries and self.entries[0][1] < now - JOURNAL_S:
            self.entries.popleft()
        if seq > self.seq or seq < 0:
            return None
        if seq == self.seq:
            return []
        if not self.entries or self.entries[0][0] > seq + 1:
            return None
        return [text for n, _, text in self.entries if n > seq]


@dataclass(frozen=True, slots=True)
class Resumption:
    """What a reconnecting socket is told: the stream and number to remember, whether
    the messages it missed follow (`resumed`), and those messages."""

    stream: str
    seq: int
    resumed: bool
    missed: tuple[str, ...]


@dataclass
class SessionRegistry:
    clock: Callable[[], float]
    _sessions: dict[str, Session] = field(default_factory=dict)
    _sockets: dict[str, set[Socket]] = field(default_factory=dict)
    # Why revoked sessions ended (digest -> reason, expiry), so that a client that
    # presents one again learns why ("the account is disabled"), not just "unknown".
    _revoked: dict[str, tuple[str, float]] = field(default_factory=dict)
    _journals: dict[str, _Journal] = field(default_factory=dict)
    _next_purge: float = 0.0
    _keys_of: dict[str, set[str]] = field(default_factory=dict)  # username -> their sessions' keys

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
        self._keys_of.setdefault(username, set()).add(session.key)
        return token, session

    def resolve(self, token: str) -> Session | None:
        key = _digest(token)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires_at < self.clock():
            self._drop(key)
            return None
        return session

    def is_live(self, session: Session) -> bool:
        """Still registered and not expired (a websocket asks this long after its login)."""
        return self._sessions.get(session.key) is session and session.expires_at >= self.clock()

    def revoke(self, token: str) -> Session | None:
        return self._drop(_digest(token))

    def _drop(self, key: str) -> Session | None:
        session = self._sessions.pop(key, None)
        if session is not None:
            keys = self._keys_of.get(session.username, set())
            keys.discard(key)
            if not keys:
                self._keys_of.pop(session.username, None)
        return session

    def revoke_user(
        self, username: str, *, keep: Callable[[Session], bool] | None = None, reason: str = ""
    ) -> list[Session]:
        """End the user's sessions (all, or those `keep` rejects); returns the ended ones.
        With a `reason`, `why_revoked` tells it to whoever presents one of them again."""
        ended = [s for s in self._sessions.values() if s.username == username and not (keep and keep(s))]
        for session in ended:
            self._drop(session.key)
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
            self._drop(key)
        for key in [k for k, (_, until) in self._revoked.items() if until < now]:
            del self._revoked[key]
        for journal in self._journals.values():
            journal.after(journal.seq, now)  # drops what is too old to be replayed

    # --- websockets ------------------------------------------------------------------

    def attach(self, username: str, socket: Socket) -> None:
        self._sockets.setdefault(username, set()).add(socket)

    def resume(self, username: str, stream: str | None, seq: int | None) -> Resumption:
        """For a socket about to attach: the messages after `seq` of `stream` (what a
        dropped desktop missed), when the journal still holds all of them.

        Call `attach` after sending them with no await in between the last call of this
        and `attach`, or a message sent meanwhile would be missed; see
        `cti.web.server.agent_socket`.
        """
        journal = self._journal(username)
        if stream != journal.stream or seq is None:
            return Resumption(stream=journal.stream, seq=journal.seq, resumed=False, missed=())
        missed = journal.after(seq, self.clock())
        if missed is None:
            return Resumption(stream=journal.stream, seq=journal.seq, resumed=False, missed=())
        return Resumption(stream=journal.stream, seq=journal.seq, resumed=True, missed=tuple(missed))

    def _journal(self, username: str) -> _Journal:
        journal = self._journals.get(username)
        if journal is None:
            # A new stream each time the hub starts or the journal is created: a number
            # from another stream never matches, so it can never replay the wrong thing.
            journal = self._journals[username] = _Journal(stream=secrets.token_hex(6))
        return journal

    def detach(self, username: str, socket: Socket) -> int:
        """Remove one socket; returns how many the user still has open."""
        sockets = self._sockets.get(username, set())
        sockets.discard(socket)
        if not sockets:
            self._sockets.pop(username, None)
        return len(sockets)

    def connected(self, username: str) -> bool:
        return bool(self._sockets.get(username))

    def serves(self, username: str) -> bool:
        """The user has a socket or a live session on this hub: messages for them are
        delivered (and journalled) here. With hubs sharing routing, a message for an agent
        reaches every hub and only those that serve the agent keep it."""
        if self._sockets.get(username):
            return True
        now = self.clock()
        return any(self._sessions[key].expires_at >= now for key in self._keys_of.get(username, ()))

    def all_sockets(self) -> list[Socket]:
        return [s for sockets in self._sockets.values() for s in sockets]

    async def send(self, username: str, message: dict[str, Any]) -> int:
        """Number the message, keep it in the user's journal, and send it to every open
        socket of the user; returns how many got it (0 while the user has none: the
        journal keeps it for a reconnect)."""
        journal = self._journal(username)
        journal.seq += 1
        text = _ENCODER.encode({**message, "seq": journal.seq})
        journal.add(text, self.clock())
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
