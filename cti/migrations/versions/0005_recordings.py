"""Recordings: recordings, recording_chain_head, recording_events, recording_access.

Revision ID: 0005_recordings
Revises: 0003_agent_sip_credentials
Written by hand to match recordings/schema.py; a branch of its own beside the CRM
outbox (0004), joined by `upgrade heads`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_recordings"
down_revision = "0003_agent_sip_credentials"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
# Frozen copies at this revision.
ACCESS_ACTIONS = ("play", "download")
EVENT_ACTIONS = ("legal_hold_set", "legal_hold_cleared", "retention_extended", "purged", "interaction_linked")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(255), nullable=False),
        sa.Column("interaction_id", sa.String(40), nullable=True),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("prev_chain_hash", sa.String(64), nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        _ts("started_at"),
        _ts("ended_at"),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("paused_intervals", sa.JSON(), nullable=False),
        sa.Column("retention_years", sa.Integer(), nullable=False),
        _ts("retention_until"),
        sa.Column("legal_hold", sa.Boolean(), nullable=False),
        sa.Column("legal_hold_reason", sa.Text(), nullable=True),
        _ts("deleted_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("seq", name=op.f("uq_recordings_seq")),
    )
    op.create_index(op.f("ix_recordings_call_id"), "recordings", ["call_id"])
    op.create_index(op.f("ix_recordings_interaction_id"), "recordings", ["interaction_id"])
    op.create_index(op.f("ix_recordings_started_at"), "recordings", ["started_at"])
    op.create_index(op.f("ix_recordings_retention_until"), "recordings", ["retention_until"])

    head = op.create_table(
        "recording_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_chain_head")),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "chain_hash": GENESIS}])

    op.create_table(
        "recording_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recording_id", sa.String(40), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        _ts("at"),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.CheckConstraint(_one_of("action", EVENT_ACTIONS), name=op.f("ck_recording_events_action")),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["recordings.id"], name=op.f("fk_recording_events_recording_id_recordings")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_events")),
    )
    op.create_index(op.f("ix_recording_events_recording_id"), "recording_events", ["recording_id"])
    op.create_index(op.f("ix_recording_events_at"), "recording_events", ["at"])

    op.create_table(
        "recording_access",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recording_id", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        _ts("at"),
        sa.Column("client", sa.String(255), nullable=True),
        sa.CheckConstraint(_one_of("action", ACCESS_ACTIONS), name=op.f("ck_recording_access_action")),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["recordings.id"], name=op.f("fk_recording_access_recording_id_recordings")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_access")),
    )
    op.create_index(op.f("ix_recording_access_recording_id"), "recording_access", ["recording_id"])
    op.create_index(op.f("ix_recording_access_actor"), "recording_access", ["actor"])
    op.create_index(op.f("ix_recording_access_at"), "recording_access", ["at"])


def downgrade() -> None:
    op.drop_table("recording_access")
    op.drop_table("recording_events")
    op.drop_table("recording_chain_head")
    op.drop_table("recordings")
