"""QA review tables: evaluation forms, evaluations, and comments pinned to a moment of a
recording (revision 0011_qa_reviews).

Owns the ORM mapping of those tables. A form is never edited in place: a change is a new
version (same name, version + 1) and evaluations keep pointing at the version they were
scored on, so an old score can always be explained by the form it used. The access audit
of plays and downloads is `recording_access` (recordings.schema).
Must never: change the schema outside an Alembic revision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_sync.schema import UtcDateTime
from cti.db import Base


class QaForm(Base):
    __tablename__ = "qa_forms"
    __table_args__ = (
        sa.UniqueConstraint("name", "version"),  # uq_qa_forms_name
        sa.CheckConstraint("version >= 1", name="version"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(120), index=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    active: Mapped[bool] = mapped_column(sa.Boolean)
    # The canonical definition (recordings.scoring.Form.to_dict): sections, questions, weights.
    definition: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class QaEvaluation(Base):
    __tablename__ = "qa_evaluations"
    __table_args__ = (sa.CheckConstraint("score IS NULL OR (score >= 0 AND score <= 100)", name="score"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    form_id: Mapped[int] = mapped_column(sa.ForeignKey("qa_forms.id"), index=True)
    recording_id: Mapped[str] = mapped_column(sa.ForeignKey("recordings.id"), index=True)
    interaction_id: Mapped[str | None] = mapped_column(sa.String(40))
    evaluator: Mapped[str] = mapped_column(sa.String(128), index=True)
    # The agent evaluated (the recording's agent): what "my evaluations" selects on.
    agent_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    answers: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # question id -> "yes" | "no" | "na" | 1..N
    score: Mapped[float | None] = mapped_column(sa.Float)  # percent; None when nothing was applicable
    section_scores: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # section id -> percent or null
    summary: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class QaComment(Base):
    """A reviewer's note pinned to a moment of a recording."""

    __tablename__ = "qa_comments"
    __table_args__ = (sa.CheckConstraint("offset_ms >= 0", name="offset_ms"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[str] = mapped_column(sa.ForeignKey("recordings.id"), index=True)
    offset_ms: Mapped[int] = mapped_column(sa.Integer)
    author: Mapped[str] = mapped_column(sa.String(128))
    text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


__all__ = ["QaComment", "QaEvaluation", "QaForm"]
