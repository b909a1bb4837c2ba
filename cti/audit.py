"""`ProfileAudit`: writes and lists the customer-profile access trail (`profile_access`).

Owns the two statements of the trail: appending the rows of one access (a view, or a
search and every customer it listed) in one transaction, and the admins' listing,
newest first. Must never: decide who may read the trail (the route asks for
`audit.read`), or be skipped: a read whose audit row cannot be written is not served
(the route lets the error through).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.audit_schema import PROFILE_ACCESS_ACTIONS, PROFILE_ACCESS_VIEWS, ProfileAccess

MAX_LISTED = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileAccessEntry:
    customer_id: str
    actor: str
    role: str
    action: str
    view: str
    found: bool
    at: datetime
    client: str | None

    def to_dict(self) -> dict[str, Any]:
        entry = asdict(self)
        entry["at"] = self.at.isoformat()
        return entry


class ProfileAudit:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record(
        self,
        customer_ids: Sequence[str],
        *,
        actor: str,
        role: str,
        action: str,
        view: str,
        found: bool,
        at: datetime,
        client: str | None,
    ) -> None:
        """One access: a row per customer shown (a view names one, a search each it listed)."""
        if action not in PROFILE_ACCESS_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(PROFILE_ACCESS_ACTIONS)}")
        if view not in PROFILE_ACCESS_VIEWS:
            raise ValueError(f"view must be one of {', '.join(PROFILE_ACCESS_VIEWS)}")
        if not customer_ids:
            return
        rows = [
            {"customer_id": c, "actor": actor, "role": role, "action": action, "view": view, "found": found,
             "at": at, "client": (client or "")[:64] or None}
            for c in customer_ids
        ]
        async with self._sessions() as session, session.begin():
            await session.execute(sa.insert(ProfileAccess), rows)

    async def entries(
        self,
        *,
        customer_id: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[ProfileAccessEntry]:
        """The trail, newest first."""
        query = sa.select(ProfileAccess).order_by(ProfileAccess.at.desc(), ProfileAccess.id.desc())
        if customer_id is not None:
            query = query.where(ProfileAccess.customer_id == customer_id)
        if actor is not None:
            query = query.where(ProfileAccess.actor == actor)
        if since is not None:
            query = query.where(ProfileAccess.at >= since)
        async with self._sessions() as session:
            rows = await session.scalars(query.limit(min(limit, MAX_LISTED)))
            return [
                ProfileAccessEntry(customer_id=r.customer_id, actor=r.actor, role=r.role, action=r.action,
                                   view=r.view, found=r.found, at=r.at, client=r.client)
                for r in rows
            ]
