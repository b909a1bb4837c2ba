"""The CRM sync tables: the outbound outbox and the KYC history written by inbound sync.

Owns the table definitions and their vocabularies. Must never change the database by
itself: Alembic revision 0004_crm_outbox creates these tables, and any change here
needs a new revision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_sync.schema import UtcDateTime
from cti.db import Base

OUTBOX_STATES = ("pending", "delivering", "delivered", "dead")
OUTBOX_KINDS = ("interaction.created", "interaction.updated", "note.added")
KYC_CHANGES = ("created", "updated", "deleted")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class OutboxMessage(Base):
    """One message for the external CRM, written in the transaction that caused it."""

    __tablename__ = "crm_outbox"
    __table_args__ = (
        sa.CheckConstraint(_one_of("state", OUTBOX_STATES), name="state"),
        sa.CheckConstraint(_one_of("kind", OUTBOX_KINDS), name="kind"),
        # The claim query: "due rows by time", on a table that keeps its delivered rows.
        sa.Index("ix_crm_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        # The ordering guard: "is there an older undelivered message in this stream?"
        sa.Index("ix_crm_outbox_stream_id", "stream", "id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    # Sent as the Idempotency-Key header; unique so a retried write cannot enqueue twice.
    idempotency_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    # Messages of one stream (one interaction) reach the CRM in the order written:
    # an update must never overtake the create it amends.
    stream: Mapped[str] = mapped_column(sa.String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    state: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    # For 'pending': when it is due. For 'delivering': when the claim's lease runs out.
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Who holds the lease: a late answer from a worker whose lease ran out must not
    # overwrite what the next holder decided.
    claim_token: Mapped[str | None] = mapped_column(sa.String(40))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class KycHistory(Base):
    """Every KYC change the external CRM told us about, oldest first per customer."""

    __tablename__ = "kyc_history"
    __table_args__ = (
        sa.CheckConstraint(_one_of("change", KYC_CHANGES), name="change"),
        sa.Index("ix_kyc_history_customer_id_changed_at", "customer_id", "changed_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    # No foreign key on purpose: the record of who was verified when must outlive the
    # mirrored customer row (the external CRM, the system of record, handles erasure).
    customer_id: Mapped[str] = mapped_column(sa.String(40))
    change: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str | None] = mapped_column(sa.String(16))
    risk_rating: Mapped[str | None] = mapped_column(sa.String(8))
    # The whole KYC record after the change (masked document number only), or null.
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    event_id: Mapped[str | None] = mapped_column(sa.String(200))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


__all__ = ["KYC_CHANGES", "KycHistory", "OUTBOX_KINDS", "OUTBOX_STATES", "OutboxMessage"]
