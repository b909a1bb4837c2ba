"""Routing configuration kept in the database: the document saved through the routing
API (routing_config), so that a restart keeps an admin's changes.

Revision ID: 0012_routing_config
Revises: 0011_qa_reviews
Written by hand to match cti/routing_store.py.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_routing_config"
down_revision = "0011_qa_reviews"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routing_config",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_config")),
    )


def downgrade() -> None:
    op.drop_table("routing_config")
