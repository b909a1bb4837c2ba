"""Reads and writes the directory (users, agents, queues, dialled numbers).

Password hashing with argon2 is deliberately slow, so it runs in a worker thread and
never on the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.directory.schema import Agent, DialledNumber, Queue, User
from cti.sip.digest import ha1_set

ROLES = ("agent", "supervisor", "qa", "admin")

_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRecord:
    username: str
    display_name: str
    role: str
    disabled: bool


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
        async with self._sessionmaker() as session:
            user = await session.get(User, username)
        if user is None:
            # Spend the same time as a real check so that timing does not reveal usernames.
            await asyncio.to_thread(_verify, _DUMMY_HASH, password)
            return None
        ok = await asyncio.to_thread(_verify, user.password_hash, password)
        if not ok or user.disabled:
            return None
        return UserRecord(username=user.username, display_name=user.display_name, role=user.role, disabled=user.disabled)

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
                    created_at=datetime.now(timezone.utc),
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


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _hasher.hash("no-such-user")
