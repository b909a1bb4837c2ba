"""Recordings: each queue's recording policy (recording_policies).

Revision ID: 0009_recording_policies
Revises: 0007_crm_emails_leads_tasks
Written by hand to match recordings/schema.py.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_recording_policies"
down_revision = "0007_crm_emails_leads_tasks"
branch_labels = None
depends_on = None

RECORDING_MODES = ("always", "never", "on_demand")  # frozen copy at this revision


def upgrade() -> None:
    op.create_table(
        "recording_policies",
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("retention_years", sa.Integer(), nullable=False),
        sa.Column("announce", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            f"mode IN ({', '.join(repr(m) for m in RECORDING_MODES)})", name=op.f("ck_recording_policies_mode")
        ),
        sa.CheckConstraint("retention_years BETWEEN 1 AND 7", name=op.f("ck_recording_policies_retention_years")),
        sa.PrimaryKeyConstraint("queue", name=op.f("pk_recording_policies")),
    )


def downgrade() -> None:
    op.drop_table("recording_policies")
