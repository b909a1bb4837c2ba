"""Joins the users' session epoch (0008) and the queues' recording policies (0009).

Revision ID: 0010_merge
Revises: 0008_users_lockout, 0009_recording_policies
"""

revision = "0010_merge"
down_revision = ("0008_users_lockout", "0009_recording_policies")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
