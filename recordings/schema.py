"""Recording tables: recordings, the chain head, the lifecycle log, the access audit.

Owns the ORM mapping of revision 0005_recordings. Rows of `recordings` are never
deleted: a purge deletes the file and turns the row into a tombstone (`deleted_at`),
which keeps the hash chain verifiable. `recording_events` (holds, retention changes,
purges) and `recording_access` (plays, downloads) are append-only.
`recording_policies` (revision 0009) holds each queue's policy. Revision 0013 added
where each file is (the filesystem, or an S3 bucket with its upload state) and its
format; rows from before it are files, WAV.
Must never: change the schema outside an Alembic revision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_sync.schema import UtcDateTime
from cti.db import Base

ACCESS_ACTIONS = ("play", "download")
RECORDING_MODES = ("always", "never", "on_demand")
EVENT_ACTIONS = ("legal_hold_set", "legal_hold_cleared", "retention_extended", "purged", "interaction_linked")
STORAGE_KINDS = ("file", "s3")
FILE_FORMATS = ("wav", "flac")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Recording(Base):
    __tablename__ = "recordings"
    __table_args__ = (
        sa.CheckConstraint(_one_of("storage", STORAGE_KINDS), name="storage"),
        sa.CheckConstraint(_one_of("file_format", FILE_FORMATS), name="file_format"),
        sa.Index("ix_recordings_pending_upload", "storage", "uploaded_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer, unique=True)  # position in the hash chain
    call_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    # Set once the interaction is written (at wrap-up, after the recording closed);
    # interactions.call_id links the two before that.
    interaction_id: Mapped[str | None] = mapped_column(sa.String(40), index=True)
    queue: Mapped[str | None] = mapped_column(sa.String(64))
    agent_id: Mapped[str | None] = mapped_column(sa.String(64))
    path: Mapped[str] = mapped_column(sa.String(512))  # relative to the storage root
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    prev_chain_hash: Mapped[str] = mapped_column(sa.String(64))
    chain_hash: Mapped[str] = mapped_column(sa.String(64))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime)
    duration_ms: Mapped[int] = mapped_column(sa.Integer)
    paused_intervals: Mapped[list[list[int]]] = mapped_column(sa.JSON)  # [[start_ms, end_ms], ...]
    retention_years: Mapped[int] = mapped_column(sa.Integer)
    retention_until: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    legal_hold: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    legal_hold_reason: Mapped[str | None] = mapped_column(sa.Text)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Where the file is: "file", at `path` under the recordings root; or "s3", the
    # object `object_key` of the configured bucket -- until `uploaded_at` is set the
    # file still waits at `path` in the local spool. `upload_error`: the last failed
    # attempt, for operators (cleared by the upload that succeeds). Outside the chain:
    # the file's SHA-256 is chained, and it is the same wherever the file lives.
    storage: Mapped[str] = mapped_column(sa.String(8), server_default="file")
    object_key: Mapped[str | None] = mapped_column(sa.String(1024))
    file_format: Mapped[str] = mapped_column(sa.String(8), server_default="wav")
    uploaded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    upload_error: Mapped[str | None] = mapped_column(sa.Text)


class RecordingChainHead(Base):
    """One row (id 1): the newest sequence number and chain hash. Locking it serializes
    writers of the chain across processes (a row lock on PostgreSQL, the write lock on
    SQLite)."""

    __tablename__ = "recording_chain_head"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(sa.Integer)
    chain_hash: Mapped[str] = mapped_column(sa.String(64))


class RecordingEvent(Base):
    """What happened to a recording after it was written, by whom and when."""

    __tablename__ = "recording_events"
    __table_args__ = (sa.CheckConstraint(_one_of("action", EVENT_ACTIONS), name="action"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[str] = mapped_column(sa.ForeignKey("recordings.id"), index=True)
    action: Mapped[str] = mapped_column(sa.String(24))
    actor: Mapped[str] = mapped_column(sa.String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


class RecordingAccess(Base):
    """The access audit: every playback and download."""

    __tablename__ = "recording_access"
    __table_args__ = (sa.CheckConstraint(_one_of("action", ACCESS_ACTIONS), name="action"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[str] = mapped_column(sa.ForeignKey("recordings.id"), index=True)
    actor: Mapped[str] = mapped_column(sa.String(128), index=True)
    action: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    client: Mapped[str | None] = mapped_column(sa.String(255))  # e.g. the remote address


class QueueRecordingPolicy(Base):
    """How a queue's calls are recorded; a queue without a row gets the hub's default."""

    __tablename__ = "recording_policies"
    __table_args__ = (
        sa.CheckConstraint(_one_of("mode", RECORDING_MODES), name="mode"),
        sa.CheckConstraint("retention_years BETWEEN 1 AND 7", name="retention_years"),
    )

    queue: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(sa.String(16))
    retention_years: Mapped[int] = mapped_column(sa.Integer)
    # Play "this call may be recorded" to the caller before an agent is rung.
    announce: Mapped[bool] = mapped_column(sa.Boolean)
