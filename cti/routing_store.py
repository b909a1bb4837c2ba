"""The routing configuration saved through the API (table routing_config), so that a
restart keeps what an admin changed.

Owns: the one row holding the whole document (JSON, the format of routing.config),
who saved it and when, and a revision number that goes up with every save. Must
never check or interpret the document (cti.routing_config does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from cti.db import Base

_ROW_ID = 1  # one configuration per contact center


class RoutingConfigRow(Base):
    __tablename__ = "routing_config"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedRouting:
    document: dict[str, Any]
    revision: int
    updated_at: datetime
    updated_by: str


class RoutingConfigStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def load(self) -> SavedRouting | None:
        async with self._sessions() as session:
            row = await session.get(RoutingConfigRow, _ROW_ID)
        if row is None:
            return None
        # SQLite hands back naive datetimes; what was written was UTC.
        updated_at = row.updated_at if row.updated_at.tzinfo is not None else row.updated_at.replace(tzinfo=UTC)
        return SavedRouting(document=dict(row.document), revision=row.revision, updated_at=updated_at,
                            updated_by=row.updated_by)

    async def save(self, document: dict[str, Any], *, by: str) -> SavedRouting:
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            row = await session.get(RoutingConfigRow, _ROW_ID, with_for_update=True)
            if row is None:
                row = RoutingConfigRow(id=_ROW_ID, revision=1, document=document, updated_at=now, updated_by=by)
                session.add(row)
            else:
                row.revision += 1
                row.document = document
                row.updated_at = now
                row.updated_by = by
            revision = row.revision
        return SavedRouting(document=document, revision=revision, updated_at=now, updated_by=by)
