"""Agents' SIP credentials: digest HA1 values per algorithm (never the password).

Revision ID: 0003_agent_sip_credentials
Revises: 0002_directory
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_agent_sip_credentials"
down_revision = "0002_directory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("sip_realm", sa.String(128), nullable=True))
        batch.add_column(sa.Column("sip_ha1", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("sip_ha1")
        batch.drop_column("sip_realm")
