"""`QaStore`: what the QA console reads and writes, over SQLAlchemy (async).

Owns: the search over recordings joined with their interaction, customer and scores
(newest first, paginated), the CSV export of a search (streamed page by page, RFC 4180,
free text defused against spreadsheet formula injection), evaluation forms (versions,
the active flag), evaluations (checked and scored by recordings.scoring), and comments
pinned to a moment of a recording.
Must never: hand out a recording's file (RecordingStore.open_for does, with its audit
row), change a `recordings` row, or edit a stored form version in place (a change is a
new version; evaluations keep the version they were scored on).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_sync.schema import Customer, Interaction
from recordings.qa_schema import QaComment, QaEvaluation, QaForm
from recordings.schema import Recording
from recordings.scoring import Form, FormError, check_answers, parse_form, score

__all__ = [
    "CSV_COLUMNS",
    "CommentInfo",
    "EvaluationInfo",
    "FormInfo",
    "QaConflict",
    "QaNotFound",
    "QaStore",
    "RecordingRow",
    "RecordingSearch",
    "SearchPage",
    "csv_cell",
    "csv_header",
    "csv_line",
]

EXPORT_PAGE = 500
MAX_COMMENT = 2000
MAX_SUMMARY = 4000


class QaNotFound(LookupError):
    """`what` (recording, form, evaluation) `key` does not exist."""

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"there is no {what} {key!r}")
        self.what = what
        self.key = key


class QaConflict(Exception):
    """The request is well formed but the state does not allow it; `code` is a slug."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


# --- search --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingSearch:
    """Every filter is optional; all given ones must hold."""

    started_from: datetime | None = None  # inclusive
    started_before: datetime | None = None  # exclusive
    agent_id: str | None = None
    queue: str | None = None
    customer: str | None = None  # a customer id (exact) or part of the name (any case)
    disposition: str | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    min_score: float | None = None  # the recording's mean evaluation score, percent
    max_score: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingRow:
    recording_id: str
    call_id: str
    interaction_id: str | None
    queue: str | None
    agent_id: str | None
    started_at: datetime
    ended_at: datetime
    duration_s: float
    paused_intervals: tuple[tuple[float, float], ...]  # seconds from the start
    size_bytes: int
    sha256: str
    legal_hold: bool
    purged: bool
    customer_id: str | None
    customer_name: str | None
    disposition: str | None
    notes: str | None
    score: float | None  # mean of the evaluations' scores, percent
    evaluations: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "call_id": self.call_id,
            "interaction_id": self.interaction_id,
            "queue": self.queue,
            "agent_id": self.agent_id,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "duration_s": self.duration_s,
            "paused_intervals": [list(pair) for pair in self.paused_intervals],
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "legal_hold": self.legal_hold,
            "purged": self.purged,
            "customer_id": self.customer_id,
            "customer_name": self.customer_name,
            "disposition": self.disposition,
            "notes": self.notes,
            "score": self.score,
            "evaluations": self.evaluations,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchPage:
    rows: list[RecordingRow]
    offset: int
    limit: int
    has_more: bool


# --- forms, evaluations, comments ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FormInfo:
    id: int
    name: str
    version: int
    active: bool
    definition: dict[str, Any]
    created_by: str
    created_at: datetime

    def form(self) -> Form:
        return parse_form(self.definition)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "active": self.active,
            "sections": self.definition["sections"],
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationInfo:
    id: int
    form_id: int
    form_name: str
    form_version: int
    recording_id: str
    interaction_id: str | None
    evaluator: str
    agent_id: str | None
    answers: dict[str, Any]
    score: float | None
    section_scores: dict[str, Any]
    summary: str | None
    created_at: datetime
    updated_at: datetime
    recording_started_at: datetime | None = None
    form: dict[str, Any] | None = field(default=None)  # the definition, when asked for

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "form_id": self.form_id,
            "form_name": self.form_name,
            "form_version": self.form_version,
            "recording_id": self.recording_id,
            "interaction_id": self.interaction_id,
            "evaluator": self.evaluator,
            "agent_id": self.agent_id,
            "answers": self.answers,
            "score": self.score,
            "section_scores": self.section_scores,
            "summary": self.summary,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "recording_started_at": self.recording_started_at.isoformat() if self.recording_started_at else None,
        }
        if self.form is not None:
            out["form"] = self.form
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CommentInfo:
    id: int
    recording_id: str
    offset_ms: int
    author: str
    text: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "recording_id": self.recording_id,
            "offset_ms": self.offset_ms,
            "author": self.author,
            "text": self.text,
            "created_at": self.created_at.isoformat(),
        }


# --- CSV (pure) ----------------------------------------------------------------------

CSV_COLUMNS = (
    "recording_id", "started_at", "ended_at", "duration_s", "queue", "agent_id", "customer_id", "customer_name",
    "disposition", "score", "evaluations", "paused_s", "legal_hold", "call_id", "interaction_id", "notes",
)
# A cell a spreadsheet would read as a formula (or as a DDE command): defused with a
# leading apostrophe, which spreadsheets show as text and do not evaluate.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(text: str | None) -> str:
    """A free-text cell, safe to open in a spreadsheet."""
    if text is None:
        return ""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv(cells: Iterable[str]) -> str:
    buffer = io.StringIO()
    # RFC 4180: CRLF line ends, fields with a comma, quote or line break in double
    # quotes, quotes doubled.
    csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerow(list(cells))
    return buffer.getvalue()


def csv_header() -> str:
    return _csv(CSV_COLUMNS)


def csv_line(row: RecordingRow) -> str:
    paused_s = sum(end - start for start, end in row.paused_intervals)
    return _csv([
        row.recording_id,
        row.started_at.isoformat(),
        row.ended_at.isoformat(),
        f"{row.duration_s:.3f}",
        csv_cell(row.queue),
        csv_cell(row.agent_id),
        csv_cell(row.customer_id),
        csv_cell(row.customer_name),
        csv_cell(row.disposition),
        "" if row.score is None else f"{row.score:.2f}",
        str(row.evaluations),
        f"{paused_s:.3f}",
        "yes" if row.legal_hold else "no",
        csv_cell(row.call_id),
        csv_cell(row.interaction_id),
        csv_cell(row.notes),
    ])


# --- the store -----------------------------------------------------------------------


def _scores() -> sa.Subquery:
    return (
        sa.select(
            QaEvaluation.recording_id.label("recording_id"),
            sa.func.avg(QaEvaluation.score).label("score"),
            sa.func.count(QaEvaluation.id).label("evaluations"),
        )
        .group_by(QaEvaluation.recording_id)
        .subquery("scores")
    )


def _row(record: Recording, values: sa.Row[Any]) -> RecordingRow:
    mean = values.score
    return RecordingRow(
        recording_id=record.id,
        call_id=record.call_id,
        interaction_id=record.interaction_id,
        queue=record.queue,
        agent_id=record.agent_id,
        started_at=record.started_at,
        ended_at=record.ended_at,
        duration_s=record.duration_ms / 1000,
        paused_intervals=tuple((a / 1000, b / 1000) for a, b in record.paused_intervals),
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        legal_hold=record.legal_hold,
        purged=record.deleted_at is not None,
        customer_id=values.customer_id,
        customer_name=values.customer_name,
        disposition=values.disposition,
        notes=values.notes,
        score=None if mean is None else round(float(mean), 2),
        evaluations=int(values.evaluations or 0),
    )


class QaStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    # --- search ----------------------------------------------------------------------

    @staticmethod
    def _query(search: RecordingSearch | None) -> sa.Select[Any]:
        scores = _scores()
        customer_name = (Customer.first_name + " " + Customer.last_name).label("customer_name")
        query = (
            sa.select(
                Recording,
                Interaction.customer_id.label("customer_id"),
                customer_name,
                Interaction.disposition.label("disposition"),
                Interaction.notes.label("notes"),
                scores.c.score.label("score"),
                scores.c.evaluations.label("evaluations"),
            )
            .outerjoin(Interaction, Interaction.id == Recording.interaction_id)
            .outerjoin(Customer, Customer.id == Interaction.customer_id)
            .outerjoin(scores, scores.c.recording_id == Recording.id)
        )
        if search is None:
            return query
        # Purged recordings have nothing left to review.
        query = query.where(Recording.deleted_at.is_(None))
        if search.started_from is not None:
            query = query.where(Recording.started_at >= search.started_from)
        if search.started_before is not None:
            query = query.where(Recording.started_at < search.started_before)
        if search.agent_id is not None:
            query = query.where(Recording.agent_id == search.agent_id)
        if search.queue is not None:
            query = query.where(Recording.queue == search.queue)
        if search.disposition is not None:
            query = query.where(Interaction.disposition == search.disposition)
        if search.customer is not None:
            needle = search.customer.strip().lower()
            query = query.where(sa.or_(
                Interaction.customer_id == search.customer.strip(),
                sa.func.lower(Customer.first_name + " " + Customer.last_name).contains(needle, autoescape=True),
            ))
        if search.min_duration_s is not None:
            query = query.where(Recording.duration_ms >= round(search.min_duration_s * 1000))
        if search.max_duration_s is not None:
            query = query.where(Recording.duration_ms <= round(search.max_duration_s * 1000))
        if search.min_score is not None:
            query = query.where(scores.c.score >= search.min_score)
        if search.max_score is not None:
            query = query.where(scores.c.score <= search.max_score)
        return query

    async def search(self, search: RecordingSearch, *, offset: int = 0, limit: int = 50) -> SearchPage:
        """One page of matching recordings, newest first."""
        query = self._query(search).order_by(Recording.started_at.desc(), Recording.id.desc())
        async with self._sessions() as session:
            found = (await session.execute(query.offset(offset).limit(limit + 1))).all()
        rows = [_row(values[0], values) for values in found[:limit]]
        return SearchPage(rows=rows, offset=offset, limit=limit, has_more=len(found) > limit)

    async def export(self, search: RecordingSearch, *, page: int = EXPORT_PAGE) -> AsyncIterator[RecordingRow]:
        """Every matching recording, newest first, read a page at a time (keyset on
        started_at and id, so a long export neither holds a transaction open nor
        repeats or skips rows as offsets would when recordings arrive meanwhile)."""
        after: tuple[datetime, str] | None = None
        while True:
            query = self._query(search)
            if after is not None:
                moment, recording_id = after
                query = query.where(sa.or_(
                    Recording.started_at < moment,
                    sa.and_(Recording.started_at == moment, Recording.id < recording_id),
                ))
            query = query.order_by(Recording.started_at.desc(), Recording.id.desc()).limit(page)
            async with self._sessions() as session:
                found = (await session.execute(query)).all()
            for values in found:
                yield _row(values[0], values)
            if len(found) < page:
                return
            last = found[-1][0]
            after = (last.started_at, last.id)

    async def recording(self, recording_id: str) -> RecordingRow:
        """One recording with its context (purged ones too: the row says so)."""
        query = self._query(None).where(Recording.id == recording_id)
        async with self._sessions() as session:
            found = (await session.execute(query)).first()
        if found is None:
            raise QaNotFound("recording", recording_id)
        return _row(found[0], found)

    # --- forms -----------------------------------------------------------------------

    async def create_form(self, form: Form, *, actor: str, at: datetime) -> FormInfo:
        """Store `form` as the newest, active version of its name; older versions of the
        name stop being offered to evaluators."""
        try:
            async with self._sessions() as session, session.begin():
                newest = await session.scalar(sa.select(sa.func.max(QaForm.version)).where(QaForm.name == form.name))
                await session.execute(sa.update(QaForm).where(QaForm.name == form.name).values(active=False))
                row = QaForm(
                    name=form.name, version=(newest or 0) + 1, active=True, definition=form.to_dict(),
                    created_by=actor, created_at=at,
                )
                session.add(row)
                await session.flush()
                return _form_info(row)
        except IntegrityError:
            raise QaConflict("form_changed", f"another version of {form.name!r} was saved at the same time; try again") from None

    async def forms(self, *, include_inactive: bool = False) -> list[FormInfo]:
        query = sa.select(QaForm).order_by(QaForm.name, QaForm.version.desc())
        if not include_inactive:
            query = query.where(QaForm.active.is_(True))
        async with self._sessions() as session:
            return [_form_info(row) for row in await session.scalars(query)]

    async def form(self, form_id: int) -> FormInfo:
        async with self._sessions() as session:
            row = await session.get(QaForm, form_id)
        if row is None:
            raise QaNotFound("form", form_id)
        return _form_info(row)

    async def set_form_active(self, form_id: int, active: bool) -> FormInfo:
        """Offer a version to evaluators again (the name's other versions are retired),
        or retire it. Evaluations made with it are untouched either way."""
        async with self._sessions() as session, session.begin():
            row = await session.get(QaForm, form_id, with_for_update=True)
            if row is None:
                raise QaNotFound("form", form_id)
            if active:
                await session.execute(
                    sa.update(QaForm).where(QaForm.name == row.name, QaForm.id != form_id).values(active=False)
                )
            row.active = active
            await session.flush()
            return _form_info(row)

    # --- evaluations -----------------------------------------------------------------

    async def evaluate(
        self, *, recording_id: str, form_id: int, answers: object, summary: str | None, evaluator: str, at: datetime
    ) -> EvaluationInfo:
        """Score `answers` on the form and keep them; FormError (the field at fault) when
        they do not fit the form."""
        _check_summary(summary)
        async with self._sessions() as session, session.begin():
            form_row = await session.get(QaForm, form_id)
            if form_row is None:
                raise QaNotFound("form", form_id)
            if not form_row.active:
                raise QaConflict("form_inactive", f"form {form_row.name!r} version {form_row.version} is retired; use the active version")
            record = await session.get(Recording, recording_id)
            if record is None:
                raise QaNotFound("recording", recording_id)
            form = parse_form(form_row.definition)
            checked = check_answers(form, answers)
            result = score(form, checked)
            row = QaEvaluation(
                form_id=form_id,
                recording_id=recording_id,
                interaction_id=record.interaction_id,
                evaluator=evaluator,
                agent_id=record.agent_id,
                answers=dict(checked),
                score=result.total,
                section_scores={s.id: s.score for s in result.sections},
                summary=_clean(summary),
                created_at=at,
                updated_at=at,
            )
            session.add(row)
            await session.flush()
            return _evaluation_info(row, form_row, record.started_at, with_form=True)

    async def revise(
        self, evaluation_id: int, *, answers: object, summary: str | None, actor: str, at: datetime
    ) -> EvaluationInfo:
        """The evaluator changes their evaluation; it stays on the form version it used."""
        _check_summary(summary)
        async with self._sessions() as session, session.begin():
            row = await session.get(QaEvaluation, evaluation_id, with_for_update=True)
            if row is None:
                raise QaNotFound("evaluation", evaluation_id)
            if row.evaluator != actor:
                raise QaConflict("not_your_evaluation", f"evaluation {evaluation_id} is {row.evaluator}'s; only they may change it")
            form_row = await session.get(QaForm, row.form_id)
            assert form_row is not None  # a foreign key
            form = parse_form(form_row.definition)
            checked = check_answers(form, answers)
            result = score(form, checked)
            row.answers = dict(checked)
            row.score = result.total
            row.section_scores = {s.id: s.score for s in result.sections}
            row.summary = _clean(summary)
            row.updated_at = at
            await session.flush()
            started = await session.scalar(sa.select(Recording.started_at).where(Recording.id == row.recording_id))
            return _evaluation_info(row, form_row, started, with_form=True)

    async def evaluation(self, evaluation_id: int) -> EvaluationInfo:
        """One evaluation with its form's definition (to show the questions)."""
        query = (
            sa.select(QaEvaluation, QaForm, Recording.started_at)
            .join(QaForm, QaForm.id == QaEvaluation.form_id)
            .join(Recording, Recording.id == QaEvaluation.recording_id)
            .where(QaEvaluation.id == evaluation_id)
        )
        async with self._sessions() as session:
            found = (await session.execute(query)).first()
        if found is None:
            raise QaNotFound("evaluation", evaluation_id)
        return _evaluation_info(found[0], found[1], found[2], with_form=True)

    async def evaluations(
        self,
        *,
        agent_id: str | None = None,
        recording_id: str | None = None,
        evaluator: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[EvaluationInfo]:
        """Newest first."""
        query = (
            sa.select(QaEvaluation, QaForm, Recording.started_at)
            .join(QaForm, QaForm.id == QaEvaluation.form_id)
            .join(Recording, Recording.id == QaEvaluation.recording_id)
            .order_by(QaEvaluation.created_at.desc(), QaEvaluation.id.desc())
            .offset(offset)
            .limit(limit)
        )
        if agent_id is not None:
            query = query.where(QaEvaluation.agent_id == agent_id)
        if recording_id is not None:
            query = query.where(QaEvaluation.recording_id == recording_id)
        if evaluator is not None:
            query = query.where(QaEvaluation.evaluator == evaluator)
        async with self._sessions() as session:
            found = (await session.execute(query)).all()
        return [_evaluation_info(e, f, started, with_form=False) for e, f, started in found]

    # --- comments --------------------------------------------------------------------

    async def add_comment(self, recording_id: str, *, offset_ms: int, text: str, author: str, at: datetime) -> CommentInfo:
        """A comment at `offset_ms` from the start; FormError (`offset_ms`, `text`) when it
        is past the end of the recording or empty."""
        clean = text.strip()
        if not clean:
            raise FormError("text", "a comment needs some text", code="missing_field")
        if len(clean) > MAX_COMMENT:
            raise FormError("text", f"a comment is at most {MAX_COMMENT} characters")
        async with self._sessions() as session, session.begin():
            record = await session.get(Recording, recording_id)
            if record is None:
                raise QaNotFound("recording", recording_id)
            if not 0 <= offset_ms <= record.duration_ms:
                raise FormError("offset_ms", f"offset_ms must be from 0 to the recording's length, {record.duration_ms} ms")
            row = QaComment(recording_id=recording_id, offset_ms=offset_ms, author=author, text=clean, created_at=at)
            session.add(row)
            await session.flush()
            return _comment_info(row)

    async def comments(self, recording_id: str) -> list[CommentInfo]:
        """In the order they sit on the recording."""
        query = sa.select(QaComment).where(QaComment.recording_id == recording_id).order_by(QaComment.offset_ms, QaComment.id)
        async with self._sessions() as session:
            return [_comment_info(row) for row in await session.scalars(query)]


def _check_summary(summary: str | None) -> None:
    if summary is not None and len(summary) > MAX_SUMMARY:
        raise FormError("summary", f"a summary is at most {MAX_SUMMARY} characters")


def _clean(text: str | None) -> str | None:
    return (text or "").strip() or None


def _form_info(row: QaForm) -> FormInfo:
    return FormInfo(
        id=row.id, name=row.name, version=row.version, active=row.active, definition=dict(row.definition),
        created_by=row.created_by, created_at=row.created_at,
    )


def _evaluation_info(row: QaEvaluation, form: QaForm, started_at: datetime | None, *, with_form: bool) -> EvaluationInfo:
    return EvaluationInfo(
        id=row.id,
        form_id=row.form_id,
        form_name=form.name,
        form_version=form.version,
        recording_id=row.recording_id,
        interaction_id=row.interaction_id,
        evaluator=row.evaluator,
        agent_id=row.agent_id,
        answers=dict(row.answers),
        score=row.score,
        section_scores=dict(row.section_scores),
        summary=row.summary,
        created_at=row.created_at,
        updated_at=row.updated_at,
        recording_started_at=started_at,
        form=_form_info(form).to_dict() if with_form else None,
    )


def _comment_info(row: QaComment) -> CommentInfo:
    return CommentInfo(
        id=row.id, recording_id=row.recording_id, offset_ms=row.offset_ms, author=row.author, text=row.text,
        created_at=row.created_at,
    )
