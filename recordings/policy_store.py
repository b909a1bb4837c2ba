"""Each queue's recording policy, kept in the database (table recording_policies).

Owns reading and writing `QueueRecordingPolicy` rows. Must never decide what a policy
means (that is `policy`); a queue with no row gets the default the caller passes.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from recordings.policy import RecordingPolicy
from recordings.schema import QueueRecordingPolicy


class PolicyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def all(self) -> dict[str, RecordingPolicy]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(QueueRecordingPolicy))).all()
        return {
            row.queue: RecordingPolicy.parse(row.mode, row.retention_years, announce=bool(row.announce)) for row in rows
        }

    async def set(self, queue: str, policy: RecordingPolicy) -> None:
        async with self._sessions() as session, session.begin():
            row = await session.get(QueueRecordingPolicy, queue)
            if row is None:
                session.add(
                    QueueRecordingPolicy(
                        queue=queue, mode=policy.mode.value, retention_years=policy.retention_years,
                        announce=policy.announce,
                    )
                )
            else:
                row.mode = policy.mode.value
                row.retention_years = policy.retention_years
                row.announce = policy.announce

    async def ensure(self, queue: str, policy: RecordingPolicy) -> None:
        """Set `policy` unless the queue has one already (demo seeding: idempotent)."""
        async with self._sessions() as session, session.begin():
            if await session.get(QueueRecordingPolicy, queue) is None:
                session.add(
                    QueueRecordingPolicy(
                        queue=queue, mode=policy.mode.value, retention_years=policy.retention_years,
                        announce=policy.announce,
                    )
                )


# The demo contact center (cti.directory.demo): sales and KYC calls may relate to
# transactions and are always kept; support records when the agent asks.
DEMO_POLICIES = {"sales": "always", "kyc": "always", "support": "on_demand"}


async def seed_demo_policies(store: PolicyStore) -> None:
    for queue, mode in DEMO_POLICIES.items():
        await store.ensure(queue, RecordingPolicy.parse(mode))


__all__ = ["DEMO_POLICIES", "PolicyStore", "seed_demo_policies"]
