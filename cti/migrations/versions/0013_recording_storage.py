"""Recording storage: where each file lives (filesystem or S3, with its upload state)
and in which format.

Revision ID: 0013_recording_storage
Revises: 0012_routing_config
Written by hand to match recordings/schema.py. Existing rows are files, WAV (the server
defaults fill them in); nothing chained changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_recording_storage"
down_revision = "0012_routing_config"
branch_labels = None
depends_on = None

# Frozen copies at this revision.
STORAGE_KINDS = ("file", "s3")
FILE_FORMATS = ("wav", "flac")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("storage", sa.String(8), server_default="file", nullable=False))
        batch.add_column(sa.Column("object_key", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("file_format", sa.String(8), server_default="wav", nullable=False))
        batch.add_column(sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("upload_error", sa.Text(), nullable=True))
        batch.create_check_constraint(op.f("ck_recordings_storage"), _one_of("storage", STORAGE_KINDS))
        batch.create_check_constraint(op.f("ck_recordings_file_format"), _one_of("file_format", FILE_FORMATS))
        batch.create_index("ix_recordings_pending_upload", ["storage", "uploaded_at"])


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_index("ix_recordings_pending_upload")
        batch.drop_constraint(op.f("ck_recordings_file_format"), type_="check")
        batch.drop_constraint(op.f("ck_recordings_storage"), type_="check")
        batch.drop_column("upload_error")
        batch.drop_column("uploaded_at")
        batch.drop_column("file_format")
        batch.drop_column("object_key")
        batch.drop_column("storage")
