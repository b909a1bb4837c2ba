"""Users: a session epoch, so that a new password or a disabled account ends the
sessions issued before, even when the change comes from another process.

Revision ID: 0008_users_lockout
Revises: 0007_crm_emails_leads_tasks
The login lockout itself keeps no SQL state (its counters live in the process, or in
Redis when the hub has one); this revision only adds what ending sessions needs.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_users_lockout"
down_revision = "0007_crm_emails_leads_tasks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_epoch")
