"""`RecordingStore`: recordings' metadata, their hash chain, retention, legal holds,
purges and the access audit, over SQLAlchemy (async), a `FileStorage` (the recordings
tree, or the spool of the S3 store) and optionally an `S3Storage`.

Owns: adding a finished recording at the end of the chain (one writer at a time: the
first statement of the transaction updates the chain-head row, which takes a row lock
on PostgreSQL and the write lock on SQLite, so concurrent hubs never fork the chain);
verifying files and chain; purging what retention allows and no hold blocks, leaving a
tombstone row; legal holds; retention extensions; handing out a file only together with
an audit row; moving a finished file from the spool to the bucket (`upload`).
Each row says where its file is (`storage`), so one store serves rows of both kinds:
a hub switched from files to S3 keeps its older recordings readable and verifiable.
The S3 upload order is: check and send the object, delete the spool copy, then mark
the row uploaded. A crash anywhere in between leaves either the spool copy (sent again
at the next start) or the checked object (found there and marked): never neither.
Must never: update a chained column after insert, delete a `recordings` row, or hash,
send or delete files on the event loop (those run in worker threads).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from recordings.integrity import (
    ChainChecker,
    ChainedRow,
    ChainEntry,
    Problem,
    ProblemKind,
    chain_hash,
)
from recordings.policy import (
    PausedInterval,
    PolicyError,
    PurgeVerdict,
    RecordingPolicy,
    add_years,
    check_extension,
    purge_verdict,
    retention_until,
)
from recordings.recorder import RecordingResult
from recordings.schema import (
    ACCESS_ACTIONS,
    Recording,
    RecordingAccess,
    RecordingChainHead,
    RecordingEvent,
)
from recordings.storage import MIME_TYPES, PART, FileStorage, format_of

if TYPE_CHECKING:
    from recordings.s3_storage import S3Storage

log = logging.getLogger(__name__)

HEAD_ID = 1
_PAGE = 500
_DEFAULT_POLICY = RecordingPolicy()


class RecordingNotFound(LookupError):
    pass


class RecordingPurged(LookupError):
    """The recording existed and was purged: its file is gone, its row a tombstone."""


class NoObjectStore(RuntimeError):
    """The recording is in an S3 bucket and this store has no S3 store configured."""


class UploadOutcome(enum.Enum):
    UPLOADED = "uploaded"  # sent from this spool, checked, the spool copy removed
    FOUND = "found"  # already in the bucket, checked (an earlier attempt got that far)
    NOT_HERE = "not_here"  # neither in this spool nor in the bucket: another hub's, or lost
    NOTHING_TO_DO = "nothing_to_do"  # a file recording, already uploaded, or purged


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingInfo:
    id: str
    seq: int
    call_id: str
    interaction_id: str | None
    queue: str | None
    agent_id: str | None
    path: str
    sha256: str
    size_bytes: int
    chain_hash: str
    started_at: datetime
    ended_at: datetime
    duration_s: float
    paused_intervals: tuple[tuple[float, float], ...]  # seconds from the start, for the player
    retention_until: datetime
    legal_hold: bool
    legal_hold_reason: str | None
    deleted_at: datetime | None
    storage: str  # "file" or "s3"
    object_key: str | None  # in the bucket, for "s3"
    file_format: str  # "wav" or "flac"
    uploaded_at: datetime | None  # "s3": None while the file waits in the spool
    upload_error: str | None  # "s3": the last failed upload attempt

    @property
    def upload_pending(self) -> bool:
        return self.storage == "s3" and self.uploaded_at is None and self.deleted_at is None

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.file_format]


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessEntry:
    recording_id: str
    actor: str
    action: str
    at: datetime
    client: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventEntry:
    recording_id: str
    action: str
    actor: str
    at: datetime
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgedRecording:
    id: str
    path: str
    retention_until: datetime
    deleted_at: datetime
    file_deleted: bool


@dataclass(slots=True, kw_only=True)
class PurgeReport:
    purged: list[PurgedRecording] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # due, kept by a legal hold
    swept: list[str] = field(default_factory=list)  # files of earlier purges deleted now
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class VerifyReport:
    checked: int = 0
    head_seq: int = 0
    head_hash: str = ""
    problems: list[Problem] = field(default_factory=list)
    # S3 recordings still in a spool (not a mismatch: each was checked where it is).
    pending_uploads: list[RecordingInfo] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _entry(row: Recording) -> ChainEntry:
    return ChainEntry(
        seq=row.seq,
        recording_id=row.id,
        call_id=row.call_id,
        queue=row.queue,
        agent_id=row.agent_id,
        path=row.path,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        started_at=row.started_at,
        ended_at=row.ended_at,
        duration_ms=row.duration_ms,
        paused_ms=row.paused_intervals,
        retention_years=row.retention_years,
    )


def _info(row: Recording) -> RecordingInfo:
    return RecordingInfo(
        id=row.id,
        seq=row.seq,
        call_id=row.call_id,
        interaction_id=row.interaction_id,
        queue=row.queue,
        agent_id=row.agent_id,
        path=row.path,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        chain_hash=row.chain_hash,
        started_at=row.started_at,
        ended_at=row.ended_at,
        duration_s=row.duration_ms / 1000,
        paused_intervals=tuple((a / 1000, b / 1000) for a, b in row.paused_intervals),
        retention_until=row.retention_until,
        legal_hold=row.legal_hold,
        legal_hold_reason=row.legal_hold_reason,
        deleted_at=row.deleted_at,
        storage=row.storage,
        object_key=row.object_key,
        file_format=row.file_format,
        uploaded_at=row.uploaded_at,
        upload_error=row.upload_error,
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("recording timestamps must be timezone-aware")
    return moment.astimezone(UTC)


class RecordingStore:
    """`storage`: the recordings tree (files) or the spool (with `objects`, new
    recordings go to that S3 store)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: FileStorage,
        objects: S3Storage | None = None,
        *,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self.storage = storage
        self.objects = objects
        self._wall_clock = wall_clock

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The database the recordings live in (the QA tables live beside them)."""
        return self._sessions

    # --- writing the chain -----------------------------------------------------------

    async def add(
        self,
        recording_id: str,
        result: RecordingResult,
        *,
        call_id: str,
        policy: RecordingPolicy = _DEFAULT_POLICY,
        queue: str | None = None,
        agent_id: str | None = None,
        interaction_id: str | None = None,
    ) -> RecordingInfo:
        """Register a finished recording as the next link of the chain; with an S3
        store it is registered as waiting in the spool (see `upload`)."""
        relative = self.storage.relative(result.path)
        object_key = self.objects.key_for(relative) if self.objects is not None else None
        started_at = _utc(result.started_at)
        ended_at = _utc(result.ended_at)
        paused = [interval.as_ms() for interval in result.paused_intervals]
        async with self._sessions() as session, session.begin():
            # The first statement writes the head: it serializes chain writers before
            # anything is read (see the module docstring).
            head = (
                await session.execute(
                    sa.update(RecordingChainHead)
                    .where(RecordingChainHead.id == HEAD_ID)
                    .values(seq=RecordingChainHead.seq + 1)
                    .returning(RecordingChainHead.seq, RecordingChainHead.chain_hash)
                )
            ).one()
            seq, prev = int(head.seq), str(head.chain_hash)
            entry = ChainEntry(
                seq=seq,
                recording_id=recording_id,
                call_id=call_id,
                queue=queue,
                agent_id=agent_id,
                path=relative,
                sha256=result.sha256,
                size_bytes=result.size_bytes,
                started_at=started_at,
                ended_at=ended_at,
                duration_ms=round(result.duration_s * 1000),
                paused_ms=paused,
                retention_years=policy.retention_years,
            )
            link = chain_hash(prev, entry)
            row = Recording(
                id=recording_id,
                seq=seq,
                call_id=call_id,
                interaction_id=interaction_id,
                queue=queue,
                agent_id=agent_id,
                path=relative,
                sha256=result.sha256,
                size_bytes=result.size_bytes,
                prev_chain_hash=prev,
                chain_hash=link,
                started_at=started_at,
                ended_at=ended_at,
                duration_ms=entry.duration_ms,
                paused_intervals=paused,
                retention_years=policy.retention_years,
                retention_until=retention_until(ended_at, policy.retention_years),
                legal_hold=False,
                legal_hold_reason=None,
                deleted_at=None,
                storage="file" if object_key is None else "s3",
                object_key=object_key,
                file_format=format_of(relative),
                uploaded_at=None,
                upload_error=None,
            )
            session.add(row)
            await session.execute(
                sa.update(RecordingChainHead).where(RecordingChainHead.id == HEAD_ID).values(chain_hash=link)
            )
        log.info("recording %s of call %s stored as link %d of the chain", recording_id, call_id, seq)
        return _info(row)

    # --- reading -------------------------------------------------------------------

    async def get(self, recording_id: str) -> RecordingInfo:
        async with self._sessions() as session:
            row = await session.get(Recording, recording_id)
            if row is None:
                raise RecordingNotFound(recording_id)
            return _info(row)

    async def for_call(self, call_id: str) -> list[RecordingInfo]:
        async with self._sessions() as session:
            rows = await session.scalars(sa.select(Recording).where(Recording.call_id == call_id).order_by(Recording.seq))
            return [_info(row) for row in rows]

    async def link_interaction(self, call_id: str, interaction_id: str, *, at: datetime) -> int:
        """Attach the CRM interaction to the call's recordings that have none yet."""
        async with self._sessions() as session, session.begin():
            ids = list(
                await session.scalars(
                    sa.select(Recording.id).where(Recording.call_id == call_id, Recording.interaction_id.is_(None))
                )
            )
            if ids:
                await session.execute(
                    sa.update(Recording).where(Recording.id.in_(ids)).values(interaction_id=interaction_id)
                )
                for recording_id in ids:
                    session.add(self._event(recording_id, "interaction_linked", "hub", at, interaction_id=interaction_id))
            return len(ids)

    # --- the S3 upload ---------------------------------------------------------------

    async def pending_uploads(self) -> list[RecordingInfo]:
        """S3 recordings not yet in the bucket (waiting in a spool), oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                sa.select(Recording)
                .where(Recording.storage == "s3", Recording.uploaded_at.is_(None), Recording.deleted_at.is_(None))
                .order_by(Recording.seq)
            )
            return [_info(row) for row in rows]

    async def upload(self, recording_id: str) -> UploadOutcome:
        """Move an S3 recording's file from this hub's spool to the bucket (in the S3
        store's own threads). A failure is noted on the row (`upload_error`) and
        raised; the spool copy stays for the next attempt."""
        objects = self._objects()
        async with self._sessions() as session:
            row = await session.get(Recording, recording_id)
            if row is None:
                raise RecordingNotFound(recording_id)
            if row.storage != "s3" or row.uploaded_at is not None or row.deleted_at is not None:
                return UploadOutcome.NOTHING_TO_DO
            info = _info(row)
        assert info.object_key is not None
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(objects.executor, self._send, objects, info)
        except Exception as exc:
            note = f"{self._wall_clock().isoformat(timespec='seconds')}: {exc}"
            async with self._sessions() as session, session.begin():
                await session.execute(
                    sa.update(Recording).where(Recording.id == recording_id).values(upload_error=note[:2000])
                )
            raise
        if outcome is UploadOutcome.NOT_HERE:
            return outcome
        async with self._sessions() as session, session.begin():
            await session.execute(
                sa.update(Recording)
                .where(Recording.id == recording_id, Recording.uploaded_at.is_(None))
                .values(uploaded_at=self._wall_clock(), upload_error=None)
            )
        log.info("recording %s is in %s (%s)", recording_id, objects.describe(info.object_key), outcome.value)
        return outcome

    def _send(self, objects: S3Storage, info: RecordingInfo) -> UploadOutcome:
        assert info.object_key is not None
        local = self.storage.resolve(info.path)
        if local.is_file():
            objects.upload(local, info.object_key, sha256=info.sha256, content_type=info.mime_type)
            self.storage.delete(info.path)
            return UploadOutcome.UPLOADED
        facts = objects.head(info.object_key)
        if facts is not None and facts.size == info.size_bytes and facts.sha256 == info.sha256:
            return UploadOutcome.FOUND
        return UploadOutcome.NOT_HERE

    def _objects(self) -> S3Storage:
        if self.objects is None:
            raise NoObjectStore("the recording is in an S3 bucket and no S3 store is configured (CTIHUB_RECORDINGS_STORE)")
        return self.objects

    # --- retention and legal holds ---------------------------------------------------

    async def set_legal_hold(self, recording_id: str, *, actor: str, reason: str, at: datetime) -> None:
        """Block deletion until the hold is cleared, whatever the retention date."""
        if not reason.strip():
            raise PolicyError("a legal hold needs a reason (case or matter reference)")
        async with self._sessions() as session, session.begin():
            row = await self._locked(session, recording_id)
            if row.deleted_at is not None:
                raise RecordingPurged(recording_id)
            row.legal_hold, row.legal_hold_reason = True, reason
            session.add(self._event(recording_id, "legal_hold_set", actor, at, reason=reason))
        log.info("legal hold on recording %s by %s: %s", recording_id, actor, reason)

    async def clear_legal_hold(self, recording_id: str, *, actor: str, reason: str = "", at: datetime) -> None:
        async with self._sessions() as session, session.begin():
            row = await self._locked(session, recording_id)
            if not row.legal_hold:
                return
            row.legal_hold = False
            session.add(
                self._event(recording_id, "legal_hold_cleared", actor, at, reason=reason, was=row.legal_hold_reason)
            )
            row.legal_hold_reason = None
        log.info("legal hold on recording %s cleared by %s", recording_id, actor)

    async def extend_retention(self, recording_id: str, until: datetime, *, actor: str, at: datetime) -> None:
        """Keep longer on an authority's request (never shorter, at most seven years)."""
        async with self._sessions() as session, session.begin():
            row = await self._locked(session, recording_id)
            if row.deleted_at is not None:
                raise RecordingPurged(recording_id)
            check_extension(row.ended_at, row.retention_until, until)
            session.add(
                self._event(
                    recording_id, "retention_extended", actor, at,
                    previous=row.retention_until.isoformat(), until=until.isoformat(),
                )
            )
            row.retention_until = until

    async def purge(self, now: datetime, *, actor: str = "retention") -> PurgeReport:
        """Delete every file whose retention passed and no legal hold keeps; each row
        becomes a tombstone and a `purged` event records what went and when. The row is
        marked first and the file deleted after: an interrupted purge leaves a file that
        the next run sweeps and `verify` reports meanwhile, never a row that lies."""
        report = PurgeReport()
        async with self._sessions() as session:
            due = list(
                await session.scalars(
                    sa.select(Recording)
                    .where(Recording.deleted_at.is_(None), Recording.retention_until <= now)
                    .order_by(Recording.seq)
                )
            )
        for candidate in due:
            if candidate.legal_hold:
                report.held.append(candidate.id)
                continue
            if candidate.storage == "s3" and self.objects is None:
                report.failed.append((candidate.id, "stored in S3 and no S3 store is configured"))
                continue
            try:
                purged = await self._purge_one(candidate.id, now, actor)
            except Exception as exc:  # one bad file must not stop the job
                log.exception("purging recording %s failed", candidate.id)
                report.failed.append((candidate.id, str(exc)))
                continue
            if isinstance(purged, PurgedRecording):
                report.purged.append(purged)
            elif purged is PurgeVerdict.KEEP_LEGAL_HOLD:
                report.held.append(candidate.id)
        report.swept = await self._sweep_tombstones()
        return report

    async def _purge_one(self, recording_id: str, now: datetime, actor: str) -> PurgedRecording | PurgeVerdict:
        async with self._sessions() as session, session.begin():
            row = await self._locked(session, recording_id)
            verdict = purge_verdict(
                now=now,
                ended_at=row.ended_at,
                retention_years=row.retention_years,
                retention_until=row.retention_until,
                legal_hold=row.legal_hold,
                deleted_at=row.deleted_at,
            )
            if verdict is not PurgeVerdict.PURGE:
                return verdict
            row.deleted_at = now
            session.add(
                self._event(
                    recording_id, "purged", actor, now,
                    path=row.path, sha256=row.sha256, retention_until=row.retention_until.isoformat(),
                )
            )
            path, until, storage, key = row.path, row.retention_until, row.storage, row.object_key
        file_deleted = await asyncio.to_thread(self._delete_file, storage, path, key)
        log.info(
            "purged recording %s (%s, retention until %s) at %s by %s%s",
            recording_id, path, until.isoformat(), now.isoformat(), actor,
            "" if file_deleted else "; its file was already gone",
        )
        return PurgedRecording(id=recording_id, path=path, retention_until=until, deleted_at=now, file_deleted=file_deleted)

    def _delete_file(self, storage: str, path: str, key: str | None) -> bool:
        """Delete a recording's file wherever it is (an S3 recording may also still
        have its spool copy); False when there was nothing to delete."""
        deleted = self.storage.delete(path)
        if storage == "s3" and key is not None:
            deleted = self._objects().delete(key) or deleted
        return deleted

    async def _sweep_tombstones(self) -> list[str]:
        async with self._sessions() as session:
            rows = (await session.execute(
                sa.select(Recording.id, Recording.path, Recording.storage, Recording.object_key)
                .where(Recording.deleted_at.is_not(None))
            )).all()
        swept = await asyncio.to_thread(self._sweep, [tuple(row) for row in rows])
        for recording_id, path in swept:
            log.info("deleted the leftover file of purged recording %s (%s)", recording_id, path)
        return [recording_id for recording_id, _ in swept]

    def _sweep(self, rows: list[tuple[Any, ...]]) -> list[tuple[str, str]]:
        # One listing of the bucket instead of a request per tombstone: a purged row
        # whose object is still listed is what an interrupted purge leaves.
        in_bucket: set[str] = set()
        if self.objects is not None and any(storage == "s3" for _, _, storage, _ in rows):
            in_bucket = set(self.objects.listed_keys())
        swept: list[tuple[str, str]] = []
        for recording_id, path, storage, key in rows:
            deleted = self.storage.delete(path)
            if storage == "s3" and key in in_bucket and self.objects is not None:
                deleted = self.objects.delete(key) or deleted
            if deleted:
                swept.append((recording_id, path))
        return swept

    # --- the access audit ----------------------------------------------------------

    async def open_for(
        self, recording_id: str, *, actor: str, action: str, at: datetime, client: str | None = None
    ) -> Path | str:
        """The recording to play or download, handed out only once the access is on record.

        Returns a `Path` when the file is on this hub's filesystem (file storage, or an
        S3 recording still waiting in the spool): serve it, with Range requests. Returns
        a `str` when it is in the S3 store: a presigned GET URL, valid for five minutes
        (`s3_storage.PRESIGNED_EXPIRY_S`), that serves Range requests itself; redirect
        the player to it (302). Raises `RecordingNotFound`, `RecordingPurged`, and
        `NoObjectStore` for an S3 recording when no S3 store is configured."""
        if action not in ACCESS_ACTIONS:
            raise ValueError(f"access action {action!r} is not one of {', '.join(ACCESS_ACTIONS)}")
        async with self._sessions() as session, session.begin():
            row = await session.get(Recording, recording_id)
            if row is None:
                raise RecordingNotFound(recording_id)
            if row.deleted_at is not None:
                raise RecordingPurged(recording_id)
            if row.storage == "s3":
                self._objects()
            session.add(RecordingAccess(recording_id=recording_id, actor=actor, action=action, at=at, client=client))
            info = _info(row)
        local = self.storage.resolve(info.path)
        if info.storage == "file":
            return local
        if info.uploaded_at is None and await asyncio.to_thread(local.is_file):
            return local
        assert info.object_key is not None
        return await asyncio.to_thread(self._objects().presigned_get, info.object_key, content_type=info.mime_type)

    async def access_log(
        self,
        *,
        recording_id: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AccessEntry]:
        """The audit trail, newest first (for admins: the web layer checks the role)."""
        query = sa.select(RecordingAccess).order_by(RecordingAccess.at.desc(), RecordingAccess.id.desc()).limit(limit)
        if recording_id is not None:
            query = query.where(RecordingAccess.recording_id == recording_id)
        if actor is not None:
            query = query.where(RecordingAccess.actor == actor)
        if since is not None:
            query = query.where(RecordingAccess.at >= since)
        async with self._sessions() as session:
            return [
                AccessEntry(recording_id=r.recording_id, actor=r.actor, action=r.action, at=r.at, client=r.client)
                for r in await session.scalars(query)
            ]

    async def events(self, *, recording_id: str | None = None, action: str | None = None, limit: int = 1000) -> list[EventEntry]:
        """Holds, extensions and purges, oldest first: the purge log."""
        query = sa.select(RecordingEvent).order_by(RecordingEvent.id).limit(limit)
        if recording_id is not None:
            query = query.where(RecordingEvent.recording_id == recording_id)
        if action is not None:
            query = query.where(RecordingEvent.action == action)
        async with self._sessions() as session:
            return [
                EventEntry(recording_id=e.recording_id, action=e.action, actor=e.actor, at=e.at, detail=dict(e.detail))
                for e in await session.scalars(query)
            ]

    # --- integrity -------------------------------------------------------------------

    async def verify(self, *, check_files: bool = True, scan_storage: bool = True) -> VerifyReport:
        """Recompute every kept file's SHA-256 (streaming S3 objects) and the whole
        chain; report each mismatch, and files or objects that no recording owns."""
        report = VerifyReport()
        checker = ChainChecker()
        known = _Known()
        async with self._sessions() as session:
            head = await session.get(RecordingChainHead, HEAD_ID)
        head_seq, head_hash = (head.seq, head.chain_hash) if head is not None else (-1, "")
        report.head_seq, report.head_hash = head_seq, head_hash
        after = -1
        while True:
            async with self._sessions() as session:
                page = list(
                    await session.scalars(
                        sa.select(Recording).where(Recording.seq > after).order_by(Recording.seq).limit(_PAGE)
                    )
                )
            if not page:
                break
            after = page[-1].seq
            file_problems = await asyncio.to_thread(self._check_files, page) if check_files else []
            for row in page:  # reported in chain order, each row's problems together
                known.add(row)
                if row.storage == "s3" and row.uploaded_at is None and row.deleted_at is None:
                    report.pending_uploads.append(_info(row))
                report.problems += checker.feed(
                    ChainedRow(entry=_entry(row), prev_chain_hash=row.prev_chain_hash, chain_hash=row.chain_hash)
                )
                report.problems += _check_tombstone(row)
                report.problems += [p for p in file_problems if p.recording_id == row.id]
        report.checked = checker.rows
        report.problems += checker.finish(head_seq, head_hash)
        if scan_storage:
            report.problems += await asyncio.to_thread(self._scan_storage, known)
        return report

    def _check_files(self, page: Sequence[Recording]) -> list[Problem]:
        problems: list[Problem] = []
        for row in page:
            if row.storage == "s3" and self.objects is None:
                problems.append(Problem(
                    kind=ProblemKind.MISSING_FILE, recording_id=row.id,
                    detail=f"s3 object {row.object_key} cannot be checked: no S3 store is configured",
                ))
                continue
            if row.deleted_at is not None:
                where = self._present(row)
                if where is not None:
                    problems.append(Problem(
                        kind=ProblemKind.PURGED_FILE_PRESENT, recording_id=row.id,
                        detail=f"purged at {row.deleted_at.isoformat()} but {where} is still there",
                    ))
                continue
            where, actual = self._digest(row)
            if actual is None:
                problems.append(Problem(kind=ProblemKind.MISSING_FILE, recording_id=row.id, detail=f"{where} is missing"))
            elif actual != row.sha256:
                problems.append(Problem(
                    kind=ProblemKind.ALTERED_FILE, recording_id=row.id,
                    detail=f"{where} has SHA-256 {actual}, recorded {row.sha256}",
                ))
        return problems

    def _present(self, row: Recording) -> str | None:
        """Where a purged recording's file still is, if anywhere."""
        if self.storage.exists(row.path):
            return row.path
        if row.storage == "s3" and row.object_key is not None and self._objects().exists(row.object_key):
            return self._objects().describe(row.object_key)
        return None

    def _digest(self, row: Recording) -> tuple[str, str | None]:
        """Where a kept recording's file is, and its SHA-256 there (None: missing). An
        S3 recording is in the spool until uploaded, and in the bucket afterwards --
        or already in the bucket when an upload stopped before the row was marked."""
        if row.storage == "file":
            return row.path, self.storage.sha256(row.path)
        assert row.object_key is not None
        if row.uploaded_at is None:
            local = self.storage.sha256(row.path)
            if local is not None:
                return row.path, local
        return self._objects().describe(row.object_key), self._objects().sha256(row.object_key)

    def _scan_storage(self, known: _Known) -> list[Problem]:
        problems: list[Problem] = []
        for relative in self.storage.files():
            if relative.endswith(PART):
                problems.append(Problem(
                    kind=ProblemKind.UNFINISHED_FILE, recording_id=None,
                    detail=f"{relative} was never finished (the recorder stopped without closing it)",
                ))
            elif relative in known.uploaded:
                problems.append(Problem(
                    kind=ProblemKind.UNREGISTERED_FILE, recording_id=None,
                    detail=f"{relative} is a copy left in the spool; its recording is in the bucket",
                ))
            elif relative not in known.paths:
                problems.append(Problem(
                    kind=ProblemKind.UNREGISTERED_FILE, recording_id=None, detail=f"{relative} belongs to no recording"
                ))
        if self.objects is not None:
            for key in self.objects.listed_keys():
                if key not in known.keys:
                    problems.append(Problem(
                        kind=ProblemKind.UNREGISTERED_FILE, recording_id=None,
                        detail=f"{self.objects.describe(key)} belongs to no recording",
                    ))
        return problems

    # --- helpers -------------------------------------------------------------------

    @staticmethod
    async def _locked(session: AsyncSession, recording_id: str) -> Recording:
        row = (
            await session.scalars(sa.select(Recording).where(Recording.id == recording_id).with_for_update())
        ).one_or_none()
        if row is None:
            raise RecordingNotFound(recording_id)
        return row

    @staticmethod
    def _event(recording_id: str, action: str, actor: str, at: datetime, **detail: Any) -> RecordingEvent:
        return RecordingEvent(recording_id=recording_id, action=action, actor=actor, at=at, detail=detail)


@dataclass(slots=True)
class _Known:
    """What the rows say should exist: local files, spool copies already uploaded
    (which should not), and object keys."""

    paths: set[str] = field(default_factory=set)
    uploaded: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)

    def add(self, row: Recording) -> None:
        if row.storage == "file":
            self.paths.add(row.path)
            return
        if row.object_key is not None:
            self.keys.add(row.object_key)
        if row.uploaded_at is None:
            self.paths.add(row.path)
        else:
            self.uploaded.add(row.path)


def _check_tombstone(row: Recording) -> list[Problem]:
    if row.deleted_at is None:
        return []
    floor = add_years(row.ended_at, row.retention_years)
    if row.deleted_at < floor:
        return [Problem(
            kind=ProblemKind.PURGED_EARLY, recording_id=row.id,
            detail=f"purged at {row.deleted_at.isoformat()}, its retention ran until at least {floor.isoformat()}",
        )]
    return []


__all__ = [
    "AccessEntry",
    "EventEntry",
    "NoObjectStore",
    "PausedInterval",
    "PurgeReport",
    "PurgedRecording",
    "RecordingInfo",
    "RecordingNotFound",
    "RecordingPurged",
    "RecordingStore",
    "UploadOutcome",
    "VerifyReport",
]
