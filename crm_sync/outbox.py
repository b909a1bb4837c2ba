"""The transactional outbox: messages for the external CRM, stored with what caused them.

Owns every query and write against `crm_outbox`: adding a message inside a caller's
open transaction (so the interaction and its message commit or vanish together),
claiming due messages under a lease, recording the outcome of a delivery, and the
admin view of dead letters (list, replay one, replay all). Must never send anything
(the delivery worker does), never decide retry timing (the pure `retry` policy does),
and never read the wall clock: every `now` comes from the caller.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from crm_sync.sync_schema import OUTBOX_KINDS, OutboxMessage

# A message not yet delivered that later messages of its stream must wait behind.
_IN_FLIGHT = ("pending", "delivering")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    """One outbox row as plain data (what the worker sends and the admin sees)."""

    id: int
    idempotency_key: str
    kind: str
    stream: str
    payload: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    claim_token: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "idempotency_key": self.idempotency_key,
            "kind": self.kind,
            "stream": self.stream,
            "payload": self.payload,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "last_error": self.last_error,
            "created_at": self.created_at.isoformat(),
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
        }


def _entry(row: Any) -> OutboxEntry:
    return OutboxEntry(
        id=row.id, idempotency_key=row.idempotency_key, kind=row.kind, stream=row.stream,
        payload=dict(row.payload), state=row.state, attempts=row.attempts,
        next_attempt_at=row.next_attempt_at, last_error=row.last_error, created_at=row.created_at,
        delivered_at=row.delivered_at, claim_token=row.claim_token,
    )


def enqueue(
    session: AsyncSession, *, kind: str, idempotency_key: str, stream: str, payload: dict[str, Any], now: datetime
) -> None:
    """Add a message to the caller's open transaction; it is due at once.

    The caller commits (or rolls back) it together with whatever caused it: that is
    the whole point of an outbox.
    """
    if kind not in OUTBOX_KINDS:
        raise ValueError(f"kind must be one of {', '.join(OUTBOX_KINDS)}; got {kind!r}")
    session.add(
        OutboxMessage(
            idempotency_key=idempotency_key, kind=kind, stream=stream, payload=payload, state="pending",
            attempts=0, next_attempt_at=now, claim_token=None, last_error=None, created_at=now,
            delivered_at=None,
        )
    )


class OutboxStore:
    """Claims, outcomes and the admin view of the outbox; each method one transaction."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def claim(self, *, now: datetime, lease_s: float, limit: int = 20) -> list[OutboxEntry]:
        """Take up to `limit` due messages for `lease_s` seconds, oldest due first.

        Due: pending with `next_attempt_at <= now`, or delivering whose lease ran out (a
        worker died holding it). Only the oldest undelivered message of each stream is
        due. One statement, so two workers never claim the same row: on PostgreSQL the
        candidate rows are locked with SKIP LOCKED; SQLite serialises writers anyway.
        Claiming counts as an attempt, so a message that crashes every worker that
        takes it still reaches the dead letters.
        """
        older = aliased(OutboxMessage)
        blocked = (
            sa.select(older.id)
            .where(older.stream == OutboxMessage.stream, older.id < OutboxMessage.id, older.state.in_(_IN_FLIGHT))
            .exists()
        )
        due = (
            sa.select(OutboxMessage.id)
            .where(OutboxMessage.state.in_(_IN_FLIGHT), OutboxMessage.next_attempt_at <= now, ~blocked)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(max(limit, 0))
        )
        token = uuid.uuid4().hex
        async with self._sessionmaker() as session, session.begin():
            if session.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            rows = (
                await session.execute(
                    sa.update(OutboxMessage)
                    .where(OutboxMessage.id.in_(due))
                    .values(
                        state="delivering",
                        attempts=OutboxMessage.attempts + 1,
                        claim_token=token,
                        next_attempt_at=now + timedelta(seconds=lease_s),
                    )
                    .returning(OutboxMessage)
                    .execution_options(synchronize_session=False)
                )
            ).scalars().all()
            entries = [_entry(row) for row in rows]
        return sorted(entries, key=lambda e: (e.created_at, e.id))

    async def mark_delivered(self, message_id: int, *, now: datetime) -> bool:
        """Record a delivery. Whoever holds the lease: a delivery is a fact either way."""
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                sa.update(OutboxMessage)
                .where(OutboxMessage.id == message_id, OutboxMessage.state == "delivering")
                .values(state="delivered", delivered_at=now, claim_token=None, last_error=None)
            )
        return _rowcount(result) == 1

    async def reschedule(self, message_id: int, claim_token: str, *, at: datetime, error: str) -> bool:
        """Back to pending, due at `at`; False if the lease was lost meanwhile."""
        return await self._settle(message_id, claim_token, state="pending", next_attempt_at=at, last_error=error)

    async def dead_letter(self, message_id: int, claim_token: str, *, error: str) -> bool:
        """Park the message for an admin; False if the lease was lost meanwhile."""
        return await self._settle(message_id, claim_token, state="dead", last_error=error)

    async def _settle(self, message_id: int, claim_token: str, **values: Any) -> bool:
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                sa.update(OutboxMessage)
                .where(
                    OutboxMessage.id == message_id,
                    OutboxMessage.state == "delivering",
                    OutboxMessage.claim_token == claim_token,
                )
                .values(claim_token=None, **values)
            )
        return _rowcount(result) == 1

    async def list_dead(self, *, limit: int = 100) -> list[OutboxEntry]:
        """Dead letters, oldest first."""
        return await self._list(OutboxMessage.state == "dead", limit=limit)

    async def list_in_state(self, state: str, *, limit: int = 100) -> list[OutboxEntry]:
        """Messages in one state, oldest first."""
        return await self._list(OutboxMessage.state == state, limit=limit)

    async def list_all(self, *, limit: int = 1000) -> list[OutboxEntry]:
        return await self._list(sa.true(), limit=limit)

    async def get(self, message_id: int) -> OutboxEntry | None:
        found = await self._list(OutboxMessage.id == message_id, limit=1)
        return found[0] if found else None

    async def _list(self, condition: sa.ColumnElement[bool], *, limit: int) -> list[OutboxEntry]:
        async with self._sessionmaker() as session:
            rows = (
                await session.scalars(
                    sa.select(OutboxMessage).where(condition).order_by(OutboxMessage.id).limit(max(limit, 0))
                )
            ).all()
        return [_entry(row) for row in rows]

    async def replay(self, message_id: int, *, now: datetime) -> bool:
        """A dead letter back to pending with a fresh attempt budget; False if not dead.

        The idempotency key stays the same: if the CRM did apply it after all, it
        answers "already have it" instead of making a duplicate.
        """
        return await self._replay(OutboxMessage.id == message_id, now=now) == 1

    async def replay_all(self, *, now: datetime) -> int:
        """Every dead letter back to pending; returns how many."""
        return await self._replay(sa.true(), now=now)

    async def _replay(self, condition: sa.ColumnElement[bool], *, now: datetime) -> int:
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                sa.update(OutboxMessage)
                .where(OutboxMessage.state == "dead", condition)
                .values(state="pending", attempts=0, next_attempt_at=now, claim_token=None)
            )
        return _rowcount(result)

    async def counts(self) -> dict[str, int]:
        """Messages per state (every state present, zeros included)."""
        async with self._sessionmaker() as session:
            rows = (
                await session.execute(
                    sa.select(OutboxMessage.state, sa.func.count()).group_by(OutboxMessage.state)
                )
            ).all()
        counts = {state: 0 for state in ("pending", "delivering", "delivered", "dead")}
        counts.update({state: int(n) for state, n in rows})
        return counts

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending message (or expiring lease) falls due; None if none."""
        async with self._sessionmaker() as session:
            value = await session.scalar(
                sa.select(sa.func.min(OutboxMessage.next_attempt_at)).where(OutboxMessage.state.in_(_IN_FLIGHT))
            )
        # min() keeps the column's type, so UtcDateTime makes this aware on SQLite too.
        return value

    async def purge_delivered(self, *, before: datetime) -> int:
        """Forget delivered messages older than `before`; the CRM has them."""
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                sa.delete(OutboxMessage).where(OutboxMessage.state == "delivered", OutboxMessage.delivered_at < before)
            )
        return _rowcount(result)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["OutboxEntry", "OutboxStore", "enqueue"]
