"""Directory: users, agents, queues and dialled numbers.

Revision ID: 0002_directory
Revises: 0001_crm
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_directory"
down_revision = "0001_crm"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_users")),
    )
    op.create_table(
        "agents",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("extension", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], ondelete="CASCADE",
            name=op.f("fk_agents_username_users"),
        ),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_agents")),
    )
    op.create_table(
        "queues",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("required_skills", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_queues")),
    )
    op.create_table(
        "dialled_numbers",
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["queue"], ["queues.name"], ondelete="CASCADE",
            name=op.f("fk_dialled_numbers_queue_queues"),
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_dialled_numbers")),
    )


def downgrade() -> None:
    op.drop_table("dialled_numbers")
    op.drop_table("queues")
    op.drop_table("agents")
    op.drop_table("users")
