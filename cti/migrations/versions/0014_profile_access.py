"""The customer-profile access audit (profile_access).

Revision ID: 0014_profile_access
Revises: 0013_recording_storage
Written by hand to match cti/audit_schema.py.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_profile_access"
down_revision = "0013_recording_storage"
branch_labels = None
depends_on = None

ACTIONS = ("view", "search")  # frozen copies at this revision
VIEWS = ("full", "masked")


def upgrade() -> None:
    op.create_table(
        "profile_access",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("view", sa.String(16), nullable=False),
        sa.Column("found", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(64), nullable=True),
        sa.CheckConstraint(f"action IN {ACTIONS!r}", name=op.f("ck_profile_access_action")),
        sa.CheckConstraint(f"view IN {VIEWS!r}", name=op.f("ck_profile_access_view")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_access")),
    )
    op.create_index(op.f("ix_profile_access_customer_id"), "profile_access", ["customer_id"])
    op.create_index(op.f("ix_profile_access_actor"), "profile_access", ["actor"])
    op.create_index(op.f("ix_profile_access_at"), "profile_access", ["at"])


def downgrade() -> None:
    op.drop_table("profile_access")
