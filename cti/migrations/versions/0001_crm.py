"""CRM tables: customers, customer_phones, kyc_records, trading_accounts, interactions.

Revision ID: 0001_crm
Revises:
Written by hand to match crm_sync/schema.py; constraint names follow the naming
convention of cti.db.Base so that later batch migrations on SQLite can find them.
"""

from alembic import op
import sqlalchemy as sa

revision = "0001_crm"
down_revision = None
branch_labels = None
depends_on = None


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# Frozen copies of the vocabularies at this revision: a migration must not change
# meaning when crm_sync.schema evolves later.
TIERS = ("retail", "professional", "vip")
PHONE_KINDS = ("mobile", "home", "work")
KYC_STATUSES = ("not_started", "pending", "verified", "rejected", "expired")
RISK_RATINGS = ("low", "medium", "high")
PLATFORMS = ("MT5", "cTrader", "WebTrader")
ACCOUNT_STATUSES = ("active", "dormant", "closed")
CHANNELS = ("voice", "chat", "email")
DIRECTIONS = ("inbound", "outbound")
OUTCOMES = ("completed", "abandoned", "missed", "failed")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("account_manager", sa.String(64), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("marketing_consent", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint(_one_of("tier", TIERS), name=op.f("ck_customers_tier")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )

    op.create_table(
        "customer_phones",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("e164", sa.String(20), nullable=False),
        sa.Column("raw", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.CheckConstraint(_one_of("kind", PHONE_KINDS), name=op.f("ck_customer_phones_kind")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"],
            name=op.f("fk_customer_phones_customer_id_customers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_phones")),
    )
    op.create_index(op.f("ix_customer_phones_customer_id"), "customer_phones", ["customer_id"])
    op.create_index(op.f("ix_customer_phones_e164"), "customer_phones", ["e164"])

    op.create_table(
        "kyc_records",
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("verified_at", nullable=True),
        sa.Column("risk_rating", sa.String(8), nullable=False),
        sa.Column("pep", sa.Boolean(), nullable=False),
        sa.Column("sanctions_hit", sa.Boolean(), nullable=False),
        sa.Column("edd_required", sa.Boolean(), nullable=False),
        sa.Column("edd_reasons", sa.JSON(), nullable=False),
        sa.Column("document_type", sa.String(32), nullable=True),
        sa.Column("document_number_masked", sa.String(64), nullable=True),
        _ts("next_review_at", nullable=True),
        _ts("updated_at"),
        sa.CheckConstraint(_one_of("status", KYC_STATUSES), name=op.f("ck_kyc_records_status")),
        sa.CheckConstraint(_one_of("risk_rating", RISK_RATINGS), name=op.f("ck_kyc_records_risk_rating")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"],
            name=op.f("fk_kyc_records_customer_id_customers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_kyc_records")),
    )

    op.create_table(
        "trading_accounts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("balance", sa.Numeric(18, 2), nullable=False),
        sa.Column("equity", sa.Numeric(18, 2), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.CheckConstraint(_one_of("platform", PLATFORMS), name=op.f("ck_trading_accounts_platform")),
        sa.CheckConstraint(_one_of("status", ACCOUNT_STATUSES), name=op.f("ck_trading_accounts_status")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"],
            name=op.f("fk_trading_accounts_customer_id_customers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_accounts")),
        sa.UniqueConstraint("number", name=op.f("uq_trading_accounts_number")),
    )
    op.create_index(op.f("ix_trading_accounts_customer_id"), "trading_accounts", ["customer_id"])

    op.create_table(
        "interactions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=True),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("caller_number", sa.String(254), nullable=False),
        sa.Column("dialled", sa.String(254), nullable=True),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("agent_id", sa.String(64), nullable=True),
        _ts("started_at"),
        _ts("answered_at", nullable=True),
        _ts("ended_at", nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("disposition", sa.String(64), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("call_id", sa.String(255), nullable=True),
        sa.CheckConstraint(_one_of("channel", CHANNELS), name=op.f("ck_interactions_channel")),
        sa.CheckConstraint(_one_of("direction", DIRECTIONS), name=op.f("ck_interactions_direction")),
        sa.CheckConstraint(_one_of("outcome", OUTCOMES), name=op.f("ck_interactions_outcome")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"],
            name=op.f("fk_interactions_customer_id_customers"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interactions")),
    )
    op.create_index(op.f("ix_interactions_call_id"), "interactions", ["call_id"])
    op.create_index(op.f("ix_interactions_started_at"), "interactions", ["started_at"])
    op.create_index(
        op.f("ix_interactions_customer_id_started_at"), "interactions", ["customer_id", "started_at"]
    )


def downgrade() -> None:
    op.drop_table("interactions")
    op.drop_table("trading_accounts")
    op.drop_table("kyc_records")
    op.drop_table("customer_phones")
    op.drop_table("customers")
