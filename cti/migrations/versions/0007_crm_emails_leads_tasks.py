"""CRM: several emails per customer, leads, tasks, and IVR/recording/transcript references on interactions.

Revision ID: 0007_crm_emails_leads_tasks
Revises: 0006_merge
Written by hand to match crm_sync/schema.py; constraint names follow the naming
convention of cti.db.Base. Existing primary emails are copied into customer_emails so
lookup by email finds customers created before this revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_crm_emails_leads_tasks"
down_revision = "0006_merge"
branch_labels = None
depends_on = None


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# Frozen copies of the vocabularies at this revision.
EMAIL_KINDS = ("personal", "work")
LEAD_SOURCES = ("web_form", "inbound_call", "chat", "referral", "campaign", "partner", "import")
LEAD_STATUSES = ("new", "contacted", "qualified", "converted", "lost")
TASK_KINDS = ("callback", "follow_up", "document_request", "kyc_review")
TASK_STATUSES = ("open", "done", "cancelled")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "customer_emails",
        sa.Column("id", sa.String(48), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.CheckConstraint(_one_of("kind", EMAIL_KINDS), name=op.f("ck_customer_emails_kind")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_customer_emails_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_emails")),
    )
    op.create_index("ix_customer_emails_address", "customer_emails", ["address"])
    op.create_index(op.f("ix_customer_emails_customer_id"), "customer_emails", ["customer_id"])
    op.execute(
        "INSERT INTO customer_emails (id, customer_id, address, kind, is_primary) "
        "SELECT 'eml_' || id, id, LOWER(email), 'personal', TRUE FROM customers WHERE email IS NOT NULL"
    )

    op.create_table(
        "leads",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("phone_e164", sa.String(20), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("interest", sa.String(200), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint(_one_of("source", LEAD_SOURCES), name=op.f("ck_leads_source")),
        sa.CheckConstraint(_one_of("status", LEAD_STATUSES), name=op.f("ck_leads_status")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_leads_customer_id_customers"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
    )
    op.create_index(op.f("ix_leads_customer_id"), "leads", ["customer_id"])
    op.create_index(op.f("ix_leads_phone_e164"), "leads", ["phone_e164"])
    op.create_index(op.f("ix_leads_owner"), "leads", ["owner"])

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("interaction_id", sa.String(40), nullable=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        _ts("due_at", nullable=True),
        _ts("created_at"),
        _ts("completed_at", nullable=True),
        sa.CheckConstraint(_one_of("kind", TASK_KINDS), name=op.f("ck_tasks_kind")),
        sa.CheckConstraint(_one_of("status", TASK_STATUSES), name=op.f("ck_tasks_status")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_tasks_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index("ix_tasks_customer_id_status_due_at", "tasks", ["customer_id", "status", "due_at"])
    op.create_index(op.f("ix_tasks_owner"), "tasks", ["owner"])

    op.add_column("interactions", sa.Column("ivr_path", sa.JSON(), nullable=True))
    op.add_column("interactions", sa.Column("recording_id", sa.String(40), nullable=True))
    op.add_column("interactions", sa.Column("transcript_ref", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("interactions") as batch:
        batch.drop_column("transcript_ref")
        batch.drop_column("recording_id")
        batch.drop_column("ivr_path")
    op.drop_table("tasks")
    op.drop_table("leads")
    op.drop_table("customer_emails")
