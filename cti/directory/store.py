"""Reads and writes the directory (users, agents, queues, dialled numbers).

Password hashing with argon2 is deliberately slow, so it runs in a worker thread and
never on the event loop. A user's `session_epoch` goes up whenever the sessions
issued so far must end (new password, account disabled); the hub compares it with
the epoch a session was issued under, so a change made by another process (the
`ctihub users` command) takes effect on the hub's next check.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.directory.schema import Agent, DialledNumber, Queue, User
from cti.sip.digest import ha1_set

ROLES = ("agent", "supervisor", "qa", "admin")

# Usernames double as SIP usernames of agents' phones and appear in URLs and logs:
# letters, digits and . _ @ - only, starting with a letter or digit.
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def username_problem(username: str) -> str | None:
    """Why `username` cannot be a username, or None when it can."""
    if _USERNAME.fullmatch(username) is None:
        return "usernames are 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
    return None

_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRecord:
    username: str
    display_name: str
    role: str
    disabled: bool
    session_epoch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRecord:
    username: str
    display_name: str
    skills: tuple[str, ...]
    languages: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueRecord:
    name: str
    display_name: str
    required_skills: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Directory:
    """A snapshot of the directory, as the routing and call services need it."""

    agents: dict[str, AgentRecord]
    queues: dict[str, QueueRecord]
    numbers: dict[str, str]  # dialled number -> queue name


class DirectoryStore:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def load(self) -> Directory:
        async with self._sessionmaker() as session:
            agent_rows = (
                await session.execute(
                    select(Agent, User).join(User, User.username == Agent.username).where(User.disabled.is_(False))
                )
            ).all()
            queue_rows = (await session.execute(select(Queue))).scalars().all()
            number_rows = (await session.execute(select(DialledNumber))).scalars().all()
        return Directory(
            agents={
                a.username: AgentRecord(
                    username=a.username,
                    display_name=u.display_name,
                    skills=tuple(a.skills or ()),
                    languages=tuple(a.languages or ()),
                )
                for a, u in agent_rows
            },
            queues={
                q.name: QueueRecord(name=q.name, display_name=q.display_name, required_skills=tuple(q.required_skills or ()))
                for q in queue_rows
            },
            numbers={n.number: n.queue for n in number_rows},
        )

    async def authenticate(self, username: str, password: str) -> UserRecord | None:
        """The user when the password matches and the account is enabled, else None."""
        user = await self.check_password(username, password)
        return user if user is not None and not user.disabled else None

    async def check_password(self, username: str, password: str) -> UserRecord | None:
        """The user when the password matches, disabled or not (the caller says which
        answer a disabled user gets); None for no such user or a wrong password."""
        async with self._sessionmaker() as session:
            user = await session.get(User, username)
        if user is None:
            # Spend the same time as a real check so that timing does not reveal usernames.
            await asyncio.to_thread(_verify, _DUMMY_HASH, password)
            return None
        if not await asyncio.to_thread(_verify, user.password_hash, password):
            return None
        return _record(user)

    async def account(self, username: str) -> UserRecord | None:
        async with self._sessionmaker() as session:
            user = await session.get(User, username)
        return _record(user) if user is not None else None

    async def accounts(self, usernames: Collection[str]) -> dict[str, UserRecord]:
        """The existing users among `usernames`, in one query."""
        if not usernames:
            return {}
        async with self._sessionmaker() as session:
            users = (await session.execute(select(User).where(User.username.in_(list(usernames))))).scalars().all()
        return {u.username: _record(u) for u in users}

    async def list_users(self) -> list[UserRecord]:
        async with self._sessionmaker() as session:
            users = (await session.execute(select(User).order_by(User.username))).scalars().all()
        return [_record(u) for u in users]

    async def set_disabled(self, username: str, disabled: bool) -> bool:
        """Disable or enable a user; False for no such user. Disabling ends every session
        (the epoch goes up), so enabling again later does not revive them."""
        values: dict[str, object] = {"disabled": disabled}
        if disabled:
            values["session_epoch"] = User.session_epoch + 1
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(update(User).where(User.username == username).values(**values))
        return bool(getattr(result, "rowcount", 0))

    async def set_password(self, username: str, password: str) -> bool:
        """A new password ends every session issued under the old one; False for no such user."""
        password_hash = await hash_password(password)
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                update(User)
                .where(User.username == username)
                .values(password_hash=password_hash, session_epoch=User.session_epoch + 1)
            )
        return bool(getattr(result, "rowcount", 0))

    async def add_user(
        self,
        *,
        username: str,
        display_name: str,
        role: str,
        password: str,
        skills: tuple[str, ...] = (),
        languages: tuple[str, ...] = (),
        password_hash: str | None = None,
    ) -> bool:
        """Create a user (and its agent record for the agent role); False when it exists.

        `password_hash` (an argon2 hash from `hash_password`) may stand in for `password`."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        problem = username_problem(username)
        if problem is not None:
            raise ValueError(problem)
        async with self._sessionmaker() as session:
            if await session.get(User, username) is not None:
                return False
        if password_hash is None:
            password_hash = await hash_password(password)
        async with self._sessionmaker() as session, session.begin():
            if await session.get(User, username) is not None:
                return False
            session.add(
                User(
                    username=username,
                    display_name=display_name,
                    role=role,
                    password_hash=password_hash,
                    disabled=False,
                    session_epoch=0,
                    created_at=datetime.now(UTC),
                )
            )
            await session.flush()
            if role == "agent":
                session.add(Agent(username=username, skills=list(skills), languages=list(languages)))
        return True

    async def set_sip_password(self, username: str, *, realm: str, password: str) -> bool:
        """Store the digest HA1 values of an agent's SIP password; False for no such agent."""
        ha1s = ha1_set(username, realm, password)
        async with self._sessionmaker() as session, session.begin():
            agent = await session.get(Agent, username)
            if agent is None:
                return False
            agent.sip_realm = realm
            agent.sip_ha1 = ha1s
        return True

    async def sip_credentials(self, username: str, *, realm: str) -> dict[str, str] | None:
        """HA1 by algorithm for an enabled agent whose credentials were made for `realm`."""
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(Agent.sip_ha1, Agent.sip_realm, User.disabled)
                    .join(User, User.username == Agent.username)
                    .where(Agent.username == username)
                )
            ).first()
        if row is None or row.disabled or row.sip_ha1 is None or row.sip_realm != realm:
            return None
        return dict(row.sip_ha1)

    async def ensure_queue(self, *, name: str, display_name: str, required_skills: tuple[str, ...], numbers: tuple[str, ...]) -> None:
        async with self._sessionmaker() as session, session.begin():
            if await session.get(Queue, name) is None:
                session.add(Queue(name=name, display_name=display_name, required_skills=list(required_skills)))
                await session.flush()
            for number in numbers:
                if await session.get(DialledNumber, number) is None:
                    session.add(DialledNumber(number=number, queue=name, description=display_name))


def _record(user: User) -> UserRecord:
    return UserRecord(
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        disabled=user.disabled,
        session_epoch=user.session_epoch or 0,
    )


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _hasher.hash("no-such-user")
