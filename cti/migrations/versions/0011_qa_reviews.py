"""QA review: evaluation forms (qa_forms), evaluations (qa_evaluations) and comments
pinned to a moment of a recording (qa_comments). The audit of plays and downloads is
recording_access (0005).

Revision ID: 0011_qa_reviews
Revises: 0010_merge
Written by hand to match recordings/qa_schema.py.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_qa_reviews"
down_revision = "0010_merge"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "qa_forms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        _ts("created_at"),
        sa.CheckConstraint("version >= 1", name=op.f("ck_qa_forms_version")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qa_forms")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_qa_forms_name")),
    )
    op.create_index(op.f("ix_qa_forms_name"), "qa_forms", ["name"])

    op.create_table(
        "qa_evaluations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("form_id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.String(40), nullable=False),
        sa.Column("interaction_id", sa.String(40), nullable=True),
        sa.Column("evaluator", sa.String(128), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("section_scores", sa.JSON(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint("score IS NULL OR (score >= 0 AND score <= 100)", name=op.f("ck_qa_evaluations_score")),
        sa.ForeignKeyConstraint(["form_id"], ["qa_forms.id"], name=op.f("fk_qa_evaluations_form_id_qa_forms")),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["recordings.id"], name=op.f("fk_qa_evaluations_recording_id_recordings")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qa_evaluations")),
    )
    op.create_index(op.f("ix_qa_evaluations_form_id"), "qa_evaluations", ["form_id"])
    op.create_index(op.f("ix_qa_evaluations_recording_id"), "qa_evaluations", ["recording_id"])
    op.create_index(op.f("ix_qa_evaluations_evaluator"), "qa_evaluations", ["evaluator"])
    op.create_index(op.f("ix_qa_evaluations_agent_id"), "qa_evaluations", ["agent_id"])
    op.create_index(op.f("ix_qa_evaluations_created_at"), "qa_evaluations", ["created_at"])

    op.create_table(
        "qa_comments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recording_id", sa.String(40), nullable=False),
        sa.Column("offset_ms", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.CheckConstraint("offset_ms >= 0", name=op.f("ck_qa_comments_offset_ms")),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["recordings.id"], name=op.f("fk_qa_comments_recording_id_recordings")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qa_comments")),
    )
    op.create_index(op.f("ix_qa_comments_recording_id"), "qa_comments", ["recording_id"])


def downgrade() -> None:
    op.drop_table("qa_comments")
    op.drop_table("qa_evaluations")
    op.drop_table("qa_forms")
