"""QA review: evaluation forms, evaluations, pinned comments, and the audit of recording access (filled in by the QA console work).

Revision ID: 0011_qa_reviews
Revises: 0010_merge
"""

revision = "0011_qa_reviews"
down_revision = "0010_merge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
