"""Joins the CRM outbox and the recordings branches.

Revision ID: 0006_merge
Revises: 0004_crm_outbox, 0005_recordings
"""

revision = "0006_merge"
down_revision = ("0004_crm_outbox", "0005_recordings")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
