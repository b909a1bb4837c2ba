"""Routing configuration kept in the database (filled in by the routing configuration work).

Revision ID: 0012_routing_config
Revises: 0011_qa_reviews
"""

revision = "0012_routing_config"
down_revision = "0011_qa_reviews"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
