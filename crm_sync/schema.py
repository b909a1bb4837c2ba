"""The CRM tables: customers, their phones, KYC record, trading accounts, interactions.

Owns the table definitions and the fixed vocabularies their columns accept. Must never
change the database by itself: every change here needs a matching Alembic revision in
`cti/migrations/versions` (0001_crm created these tables).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cti.db import Base

TIERS = ("retail", "professional", "vip")
PHONE_KINDS = ("mobile", "home", "work")
KYC_STATUSES = ("not_started", "pending", "verified", "rejected", "expired")
RISK_RATINGS = ("low", "medium", "high")
# Order matters: profiles list reasons in this order so agents read them consistently.
EDD_REASONS = (
    "sanctioned_country",
    "shell_companies",
    "unusual_transactions",
    "questionable_financial_history",
    "linked_to_suspected_illegal_activity",
    "penalties_or_noncompliance",
    "unpaid_debts_or_liens",
    "politically_exposed",
    "sanctions_hit",
)
PLATFORMS = ("MT5", "cTrader", "WebTrader")
ACCOUNT_STATUSES = ("active", "dormant", "closed")
CHANNELS = ("voice", "chat", "email")
DIRECTIONS = ("inbound", "outbound")
OUTCOMES = ("completed", "abandoned", "missed", "failed")
EMAIL_KINDS = ("personal", "work")
LEAD_SOURCES = ("web_form", "inbound_call", "chat", "referral", "campaign", "partner", "import")
LEAD_STATUSES = ("new", "contacted", "qualified", "converted", "lost")
TASK_KINDS = ("callback", "follow_up", "document_request", "kyc_review")
TASK_STATUSES = ("open", "done", "cancelled")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every backend.

    SQLite keeps no offset, so without this it would hand back naive datetimes and a
    comparison with an aware `now` would raise; naive input is refused for the same
    reason: its meaning depends on the machine that wrote it.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: CRM timestamps must be timezone-aware")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (sa.CheckConstraint(_one_of("tier", TIERS), name="tier"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    first_name: Mapped[str] = mapped_column(sa.String(100))
    last_name: Mapped[str] = mapped_column(sa.String(100))
    language: Mapped[str] = mapped_column(sa.String(8))
    country: Mapped[str] = mapped_column(sa.String(2))
    tier: Mapped[str] = mapped_column(sa.String(16))
    account_manager: Mapped[str | None] = mapped_column(sa.String(64))
    # The primary address, kept here for the card; every address, this one included,
    # is also a row of customer_emails, which is what lookup by email searches.
    email: Mapped[str | None] = mapped_column(sa.String(254))
    marketing_consent: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    phones: Mapped[list[CustomerPhone]] = relationship(back_populates="customer", order_by="CustomerPhone.id")
    kyc: Mapped[KycRecord | None] = relationship(back_populates="customer")
    accounts: Mapped[list[TradingAccount]] = relationship(back_populates="customer", order_by="TradingAccount.number")
    emails: Mapped[list[CustomerEmail]] = relationship(back_populates="customer", order_by="CustomerEmail.id")


class CustomerEmail(Base):
    __tablename__ = "customer_emails"
    __table_args__ = (
        sa.CheckConstraint(_one_of("kind", EMAIL_KINDS), name="kind"),
        sa.Index("ix_customer_emails_address", "address"),
    )

    id: Mapped[str] = mapped_column(sa.String(48), primary_key=True)  # room for 'eml_' + a customer id
    customer_id: Mapped[str] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    # Stored lower-cased so that lookup is one index probe; not unique, like phones.
    address: Mapped[str] = mapped_column(sa.String(254))
    kind: Mapped[str] = mapped_column(sa.String(16))
    is_primary: Mapped[bool] = mapped_column(sa.Boolean, default=False)

    customer: Mapped[Customer] = relationship(back_populates="emails")


class CustomerPhone(Base):
    __tablename__ = "customer_phones"
    __table_args__ = (sa.CheckConstraint(_one_of("kind", PHONE_KINDS), name="kind"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    # Not unique on purpose: a household or a company line belongs to several customers.
    e164: Mapped[str] = mapped_column(sa.String(20), index=True)
    raw: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16))

    customer: Mapped[Customer] = relationship(back_populates="phones")


class KycRecord(Base):
    __tablename__ = "kyc_records"
    __table_args__ = (
        sa.CheckConstraint(_one_of("status", KYC_STATUSES), name="status"),
        sa.CheckConstraint(_one_of("risk_rating", RISK_RATINGS), name="risk_rating"),
    )

    customer_id: Mapped[str] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    risk_rating: Mapped[str] = mapped_column(sa.String(8))
    pep: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    sanctions_hit: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    edd_required: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    edd_reasons: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    document_type: Mapped[str | None] = mapped_column(sa.String(32))
    # Only ever the masked form: the full document number never reaches the hub.
    document_number_masked: Mapped[str | None] = mapped_column(sa.String(64))
    next_review_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    customer: Mapped[Customer] = relationship(back_populates="kyc")


class TradingAccount(Base):
    __tablename__ = "trading_accounts"
    __table_args__ = (
        sa.CheckConstraint(_one_of("platform", PLATFORMS), name="platform"),
        sa.CheckConstraint(_one_of("status", ACCOUNT_STATUSES), name="status"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(sa.String(32), unique=True)
    platform: Mapped[str] = mapped_column(sa.String(16))
    currency: Mapped[str] = mapped_column(sa.String(3))
    balance: Mapped[Decimal] = mapped_column(sa.Numeric(18, 2))
    equity: Mapped[Decimal] = mapped_column(sa.Numeric(18, 2))
    status: Mapped[str] = mapped_column(sa.String(16))

    customer: Mapped[Customer] = relationship(back_populates="accounts")


class Interaction(Base):
    __tablename__ = "interactions"
    __table_args__ = (
        sa.CheckConstraint(_one_of("channel", CHANNELS), name="channel"),
        sa.CheckConstraint(_one_of("direction", DIRECTIONS), name="direction"),
        sa.CheckConstraint(_one_of("outcome", OUTCOMES), name="outcome"),
        # The screen pop reads "this customer's latest N": one index range scan, backwards.
        sa.Index("ix_interactions_customer_id_started_at", "customer_id", "started_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    # Nullable: a caller nobody could identify still gets an interaction on record.
    customer_id: Mapped[str | None] = mapped_column(sa.ForeignKey("customers.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(sa.String(8))
    direction: Mapped[str] = mapped_column(sa.String(8))
    caller_number: Mapped[str] = mapped_column(sa.String(254))
    dialled: Mapped[str | None] = mapped_column(sa.String(254))
    queue: Mapped[str | None] = mapped_column(sa.String(64))
    agent_id: Mapped[str | None] = mapped_column(sa.String(64))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(sa.String(16))
    disposition: Mapped[str | None] = mapped_column(sa.String(64))
    notes: Mapped[str | None] = mapped_column(sa.Text)
    call_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    # The menu choices and digits the IVR collected, in order, e.g. ["lang:de", "menu:2"].
    ivr_path: Mapped[list[str] | None] = mapped_column(sa.JSON)
    recording_id: Mapped[str | None] = mapped_column(sa.String(40))
    # Where a transcript lives (a storage key or URL); the hub does not transcribe.
    transcript_ref: Mapped[str | None] = mapped_column(sa.String(255))


class Lead(Base):
    """A prospect, or an existing customer's interest in something new."""

    __tablename__ = "leads"
    __table_args__ = (
        sa.CheckConstraint(_one_of("source", LEAD_SOURCES), name="source"),
        sa.CheckConstraint(_one_of("status", LEAD_STATUSES), name="status"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    # Null for a prospect who is not a customer yet; set once converted or matched.
    customer_id: Mapped[str | None] = mapped_column(sa.ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    phone_e164: Mapped[str | None] = mapped_column(sa.String(20), index=True)
    email: Mapped[str | None] = mapped_column(sa.String(254))
    source: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16))
    owner: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    interest: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Task(Base):
    """A follow-up someone owes a customer: a callback, a missing document, a review."""

    __tablename__ = "tasks"
    __table_args__ = (
        sa.CheckConstraint(_one_of("kind", TASK_KINDS), name="kind"),
        sa.CheckConstraint(_one_of("status", TASK_STATUSES), name="status"),
        # The screen pop reads "this customer's open tasks, soonest first".
        sa.Index("ix_tasks_customer_id_status_due_at", "customer_id", "status", "due_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"))
    interaction_id: Mapped[str | None] = mapped_column(sa.String(40))
    kind: Mapped[str] = mapped_column(sa.String(24))
    title: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(16))
    owner: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


__all__ = [
    "ACCOUNT_STATUSES",
    "CHANNELS",
    "Customer",
    "CustomerEmail",
    "CustomerPhone",
    "EMAIL_KINDS",
    "DIRECTIONS",
    "EDD_REASONS",
    "Interaction",
    "KYC_STATUSES",
    "KycRecord",
    "LEAD_SOURCES",
    "LEAD_STATUSES",
    "Lead",
    "OUTCOMES",
    "PHONE_KINDS",
    "PLATFORMS",
    "RISK_RATINGS",
    "TASK_KINDS",
    "TASK_STATUSES",
    "Task",
    "TIERS",
    "TradingAccount",
    "UtcDateTime",
]
