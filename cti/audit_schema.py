"""The customer-profile access audit (revision 0014_profile_access).

Owns the ORM mapping of `profile_access`: one row per customer whose personal data a
user was shown outside the screen pop (a profile view, masked or full, and each
customer a search listed), and per view of an id that does not exist (probing is an
access pattern worth seeing). Append-only. Recordings have their own trail
(`recording_access`, recordings.schema).
Must never: change the schema outside an Alembic revision.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_sync.schema import UtcDateTime
from cti.db import Base

PROFILE_ACCESS_ACTIONS = ("view", "search")
PROFILE_ACCESS_VIEWS = ("full", "masked")


class ProfileAccess(Base):
    __tablename__ = "profile_access"
    __table_args__ = (
        sa.CheckConstraint(f"action IN {PROFILE_ACCESS_ACTIONS!r}", name="action"),
        sa.CheckConstraint(f"view IN {PROFILE_ACCESS_VIEWS!r}", name="view"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    actor: Mapped[str] = mapped_column(sa.String(128), index=True)
    role: Mapped[str] = mapped_column(sa.String(32))
    action: Mapped[str] = mapped_column(sa.String(16))
    view: Mapped[str] = mapped_column(sa.String(16))
    found: Mapped[bool] = mapped_column(sa.Boolean)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    client: Mapped[str | None] = mapped_column(sa.String(64))
