"""CRM sync: the outbound outbox (crm_outbox) and the inbound KYC history (kyc_history).

Revision ID: 0004_crm_outbox
Revises: 0003_agent_sip_credentials
Written by hand to match crm_sync/sync_schema.py; constraint names follow the naming
convention of cti.db.Base.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_crm_outbox"
down_revision = "0003_agent_sip_credentials"
branch_labels = None
depends_on = None


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# Frozen copies of the vocabularies at this revision.
OUTBOX_STATES = ("pending", "delivering", "delivered", "dead")
OUTBOX_KINDS = ("interaction.created", "interaction.updated", "note.added")
KYC_CHANGES = ("created", "updated", "deleted")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "crm_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("stream", sa.String(200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at"),
        sa.Column("claim_token", sa.String(40), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("delivered_at", nullable=True),
        sa.CheckConstraint(_one_of("state", OUTBOX_STATES), name=op.f("ck_crm_outbox_state")),
        sa.CheckConstraint(_one_of("kind", OUTBOX_KINDS), name=op.f("ck_crm_outbox_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_crm_outbox_idempotency_key")),
    )
    op.create_index("ix_crm_outbox_state_next_attempt_at", "crm_outbox", ["state", "next_attempt_at"])
    op.create_index("ix_crm_outbox_stream_id", "crm_outbox", ["stream", "id"])

    op.create_table(
        "kyc_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("risk_rating", sa.String(8), nullable=True),
        sa.Column("snapshot", sa.JSON(), nullable=True),
        sa.Column("event_id", sa.String(200), nullable=True),
        _ts("changed_at"),
        _ts("recorded_at"),
        sa.CheckConstraint(_one_of("change", KYC_CHANGES), name=op.f("ck_kyc_history_change")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kyc_history")),
    )
    op.create_index("ix_kyc_history_customer_id_changed_at", "kyc_history", ["customer_id", "changed_at"])


def downgrade() -> None:
    op.drop_table("kyc_history")
    op.drop_table("crm_outbox")
