"""RecordingStore against real databases (SQLite and PostgreSQL) and real files:
the chain, `verify` catching tampering, purge with legal holds, the access audit."""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from cti.db import make_engine, make_sessionmaker, migrate
from recordings import cli
from recordings.assembler import AssemblerStats
from recordings.integrity import ProblemKind
from recordings.policy import PausedInterval, PolicyError, RecordingPolicy, add_years
from recordings.recorder import RecordingResult
from recordings.storage import FileStorage, new_recording_id
from recordings.store import RecordingNotFound, RecordingPurged, RecordingStore
from recordings.writer import StereoWavWriter

T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "recordings")


@pytest.fixture
def store(engine: AsyncEngine, storage: FileStorage) -> RecordingStore:
    return RecordingStore(make_sessionmaker(engine), storage)


def write_file(storage: FileStorage, recording_id: str, started_at: datetime, seconds: float = 0.5) -> RecordingResult:
    path = storage.new_path(recording_id, started_at)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = StereoWavWriter(path)
    frames = round(seconds * 8000)
    writer.append(struct.pack(f"<{2 * frames}h", *([1000, -1000] * frames)))
    closed = writer.close()
    return RecordingResult(
        path=path, sha256=closed.sha256, size_bytes=closed.size_bytes, duration_s=closed.duration_s,
        paused_intervals=(PausedInterval(start=800, end=1600),), started_at=started_at,
        ended_at=started_at + timedelta(seconds=closed.duration_s), stats=AssemblerStats(), dropped_packets=0,
    )


FIVE_YEARS = RecordingPolicy()


async def add(store: RecordingStore, k: int = 0, *, policy: RecordingPolicy = FIVE_YEARS, at: datetime = T) -> str:
    recording_id = new_recording_id()
    result = write_file(store.storage, recording_id, at + timedelta(minutes=k))
    await store.add(recording_id, result, call_id=f"call-{k}", policy=policy, queue="sales", agent_id="alice")
    return recording_id


def kinds(report: object) -> list[tuple[ProblemKind, str | None]]:
    return [(p.kind, p.recording_id) for p in report.problems]  # type: ignore[attr-defined]


def writable(path: Path) -> Path:
    os.chmod(path, 0o640)
    return path


async def sql(engine: AsyncEngine, statement: str, **params: object) -> None:
    async with engine.begin() as connection:
        await connection.execute(sa.text(statement), params)


RECORDING_TABLES = {"recordings", "recording_chain_head", "recording_events", "recording_access"}


async def test_the_migration_matches_the_models_and_starts_the_chain(engine: AsyncEngine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import recordings.schema  # noqa: F401  (not yet in cti.schema)
    from cti.db import Base

    def diff(sync_conn: sa.Connection) -> list[str]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        changes = [repr(change) for change in compare_metadata(context, Base.metadata)]
        return [c for c in changes if any(f"'{table}'" in c for table in RECORDING_TABLES)]

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        head = (await conn.execute(sa.text("SELECT id, seq, chain_hash FROM recording_chain_head"))).all()
    assert [tuple(row) for row in head] == [(1, 0, "0" * 64)]


# --- adding and reading ------------------------------------------------------------


async def test_a_stored_recording_has_its_metadata_and_verifies(store: RecordingStore) -> None:
    recording_id = new_recording_id()
    result = write_file(store.storage, recording_id, T)
    info = await store.add(recording_id, result, call_id="c1", queue="sales", agent_id="alice")
    again = await store.get(recording_id)
    assert again == info
    assert info.seq == 1 and info.path == f"2025/03/01/{recording_id}.wav"
    assert info.sha256 == result.sha256 and info.duration_s == 0.5
    assert info.paused_intervals == ((0.1, 0.2),)
    assert info.retention_until == add_years(result.ended_at, 5)
    assert not info.legal_hold and info.deleted_at is None
    assert [r.id for r in await store.for_call("c1")] == [recording_id]
    report = await store.verify()
    assert report.ok and report.checked == 1 and report.head_seq == 1 and report.head_hash == info.chain_hash
    with pytest.raises(RecordingNotFound):
        await store.get("rec_nope")


async def test_seven_year_policy_sets_seven_years(store: RecordingStore) -> None:
    recording_id = await add(store, policy=RecordingPolicy(retention_years=7))
    info = await store.get(recording_id)
    assert info.retention_until == add_years(info.ended_at, 7)


async def test_concurrent_writers_never_fork_the_chain(engine: AsyncEngine, store: RecordingStore) -> None:
    # A second store on its own engine: another hub process sharing the database.
    other_engine = make_engine(engine.url.render_as_string(hide_password=False))
    other = RecordingStore(make_sessionmaker(other_engine), store.storage)
    try:
        await asyncio.gather(*(add(store if k % 2 else other, k) for k in range(12)))
    finally:
        await other_engine.dispose()
    report = await store.verify()
    assert report.ok, kinds(report)
    assert report.checked == 12 and report.head_seq == 12


async def test_link_interaction_sets_it_once(store: RecordingStore) -> None:
    recording_id = await add(store, 1)
    assert await store.link_interaction("call-1", "int_1", at=T) == 1
    assert await store.link_interaction("call-1", "int_2", at=T) == 0
    assert (await store.get(recording_id)).interaction_id == "int_1"
    assert (await store.verify()).ok  # not a chained fact


# --- verify catches tampering ------------------------------------------------------


async def test_verify_catches_a_flipped_byte(store: RecordingStore) -> None:
    ids = [await add(store, k) for k in range(3)]
    path = writable(store.storage.resolve((await store.get(ids[1])).path))
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x01
    path.write_bytes(bytes(data))
    assert kinds(await store.verify()) == [(ProblemKind.ALTERED_FILE, ids[1])]


async def test_verify_catches_a_missing_file(store: RecordingStore) -> None:
    ids = [await add(store, k) for k in range(3)]
    store.storage.resolve((await store.get(ids[2])).path).unlink()
    assert kinds(await store.verify()) == [(ProblemKind.MISSING_FILE, ids[2])]


async def test_verify_catches_a_deleted_row(engine: AsyncEngine, store: RecordingStore) -> None:
    ids = [await add(store, k) for k in range(4)]
    path = store.storage.resolve((await store.get(ids[1])).path)
    await sql(engine, "DELETE FROM recordings WHERE id = :id", id=ids[1])
    assert kinds(await store.verify()) == [
        (ProblemKind.MISSING_ROWS, None),
        (ProblemKind.BROKEN_LINK, ids[2]),
        (ProblemKind.UNREGISTERED_FILE, None),  # its file is still on disk
    ]
    path.unlink()  # deleting the file too hides nothing
    assert [k for k, _ in kinds(await store.verify())] == [ProblemKind.MISSING_ROWS, ProblemKind.BROKEN_LINK]


async def test_verify_catches_deleted_newest_rows(engine: AsyncEngine, store: RecordingStore) -> None:
    ids = [await add(store, k) for k in range(3)]
    store.storage.resolve((await store.get(ids[2])).path).unlink()
    await sql(engine, "DELETE FROM recordings WHERE id = :id", id=ids[2])
    assert kinds(await store.verify()) == [(ProblemKind.HEAD_MISMATCH, None)]


async def test_verify_catches_an_altered_hash(engine: AsyncEngine, store: RecordingStore) -> None:
    ids = [await add(store, k) for k in range(3)]
    path = writable(store.storage.resolve((await store.get(ids[0])).path))
    path.write_bytes(path.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    # Someone replaced the file and, to cover it, the stored SHA-256.
    from recordings.writer import file_sha256

    await sql(engine, "UPDATE recordings SET sha256 = :sha WHERE id = :id", sha=file_sha256(path), id=ids[0])
    assert kinds(await store.verify()) == [(ProblemKind.ALTERED_RECORD, ids[0])]


async def test_verify_catches_altered_metadata_and_a_rehashed_row(engine: AsyncEngine, store: RecordingStore) -> None:
    ids = [await add(store, k) for k in range(3)]
    await sql(engine, "UPDATE recordings SET duration_ms = 1 WHERE id = :id", id=ids[1])
    assert kinds(await store.verify()) == [(ProblemKind.ALTERED_RECORD, ids[1])]
    await sql(engine, "UPDATE recordings SET chain_hash = :h WHERE id = :id", h="a" * 64, id=ids[1])
    assert kinds(await store.verify()) == [(ProblemKind.ALTERED_RECORD, ids[1]), (ProblemKind.BROKEN_LINK, ids[2])]


async def test_verify_reports_unfinished_and_unregistered_files(store: RecordingStore) -> None:
    await add(store)
    stray = store.storage.root / "2025" / "03" / "01"
    (stray / "rec_crashed.wav.part").write_bytes(b"RIFF")
    (stray / "rec_stranger.wav").write_bytes(b"RIFF")
    assert sorted(k.value for k, _ in kinds(await store.verify())) == ["unfinished_file", "unregistered_file"]
    assert (await store.verify(scan_storage=False)).ok


# --- retention, legal hold, purge ------------------------------------------------


async def test_purge_respects_retention_and_legal_hold_and_logs(
    store: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    old = [await add(store, k) for k in range(3)]
    recent = await add(store, 10, at=T + timedelta(days=400))
    await store.set_legal_hold(old[1], actor="compliance", reason="case 2031-17", at=T)
    now = add_years(T, 5) + timedelta(days=1)
    caplog.set_level(logging.INFO, logger="recordings.store")
    report = await store.purge(now, actor="nightly")
    assert sorted(p.id for p in report.purged) == sorted([old[0], old[2]])
    assert report.held == [old[1]] and not report.failed
    for recording_id in (old[0], old[2]):
        info = await store.get(recording_id)
        assert info.deleted_at == now
        assert not store.storage.exists(info.path)
        assert any(recording_id in r.getMessage() and "purged" in r.getMessage() for r in caplog.records)
    assert store.storage.exists((await store.get(old[1])).path)
    assert store.storage.exists((await store.get(recent)).path)
    purges = await store.events(action="purged")
    assert {e.recording_id for e in purges} == {old[0], old[2]}
    assert all(e.actor == "nightly" and e.at == now and e.detail["path"] for e in purges)
    # Tombstones keep the chain whole.
    assert (await store.verify()).ok
    # Clearing the hold lets the next run purge it.
    await store.clear_legal_hold(old[1], actor="compliance", reason="case closed", at=now)
    assert [p.id for p in (await store.purge(now)).purged] == [old[1]]
    assert [e.action for e in await store.events(recording_id=old[1])] == ["legal_hold_set", "legal_hold_cleared", "purged"]
    with pytest.raises(RecordingPurged):
        await store.set_legal_hold(old[1], actor="compliance", reason="too late", at=now)
    assert (await store.verify()).ok


async def test_a_legal_hold_needs_a_reason(store: RecordingStore) -> None:
    recording_id = await add(store)
    with pytest.raises(PolicyError):
        await store.set_legal_hold(recording_id, actor="x", reason=" ", at=T)
    with pytest.raises(RecordingNotFound):
        await store.set_legal_hold("rec_nope", actor="x", reason="y", at=T)


async def test_an_edited_retention_date_cannot_purge_early(engine: AsyncEngine, store: RecordingStore) -> None:
    recording_id = await add(store)
    await sql(engine, "UPDATE recordings SET retention_until = :t WHERE id = :id", t=T, id=recording_id)
    report = await store.purge(T + timedelta(days=30))
    assert report.purged == [] and report.held == []
    assert store.storage.exists((await store.get(recording_id)).path)


async def test_purged_early_by_hand_is_reported(engine: AsyncEngine, store: RecordingStore) -> None:
    recording_id = await add(store)
    store.storage.resolve((await store.get(recording_id)).path).unlink()
    await sql(engine, "UPDATE recordings SET deleted_at = :t WHERE id = :id", t=T + timedelta(days=1), id=recording_id)
    assert kinds(await store.verify()) == [(ProblemKind.PURGED_EARLY, recording_id)]


async def test_retention_extension(store: RecordingStore) -> None:
    recording_id = await add(store)
    info = await store.get(recording_id)
    with pytest.raises(PolicyError):
        await store.extend_retention(recording_id, info.retention_until - timedelta(days=1), actor="c", at=T)
    with pytest.raises(PolicyError):
        await store.extend_retention(recording_id, add_years(info.ended_at, 8), actor="c", at=T)
    await store.extend_retention(recording_id, add_years(info.ended_at, 7), actor="regulator-request", at=T)
    assert (await store.purge(add_years(T, 6))).purged == []
    assert [p.id for p in (await store.purge(add_years(T, 7) + timedelta(days=1))).purged] == [recording_id]


async def test_an_interrupted_purge_is_reported_then_swept(engine: AsyncEngine, store: RecordingStore) -> None:
    recording_id = await add(store)
    # As if the process died after marking the row and before deleting the file.
    now = add_years(T, 5) + timedelta(days=1)
    await sql(engine, "UPDATE recordings SET deleted_at = :t WHERE id = :id", t=now, id=recording_id)
    assert kinds(await store.verify()) == [(ProblemKind.PURGED_FILE_PRESENT, recording_id)]
    assert (await store.purge(now)).swept == [recording_id]
    assert (await store.verify()).ok


# --- the access audit --------------------------------------------------------------


async def test_every_play_and_download_is_on_record(store: RecordingStore) -> None:
    a, b = await add(store, 1), await add(store, 2)
    path = await store.open_for(a, actor="qa.jane", action="play", at=T, client="10.0.0.5")
    assert isinstance(path, Path) and path.is_file() and path == store.storage.resolve((await store.get(a)).path)
    await store.open_for(a, actor="compliance.bob", action="download", at=T + timedelta(minutes=1))
    await store.open_for(b, actor="qa.jane", action="play", at=T + timedelta(minutes=2))
    trail = await store.access_log()
    assert [(e.recording_id, e.actor, e.action) for e in trail] == [
        (b, "qa.jane", "play"), (a, "compliance.bob", "download"), (a, "qa.jane", "play"),
    ]
    assert trail[-1].at == T and trail[-1].client == "10.0.0.5"
    assert [e.actor for e in await store.access_log(recording_id=a)] == ["compliance.bob", "qa.jane"]
    assert [e.recording_id for e in await store.access_log(actor="qa.jane")] == [b, a]
    assert len(await store.access_log(since=T + timedelta(minutes=1))) == 2
    with pytest.raises(ValueError):
        await store.open_for(a, actor="x", action="delete", at=T)
    with pytest.raises(RecordingNotFound):
        await store.open_for("rec_nope", actor="x", action="play", at=T)


async def test_a_purged_recording_cannot_be_opened(store: RecordingStore) -> None:
    recording_id = await add(store)
    await store.purge(add_years(T, 6))
    with pytest.raises(RecordingPurged):
        await store.open_for(recording_id, actor="qa", action="play", at=add_years(T, 6))
    assert await store.access_log() == []


# --- formats and where files are ------------------------------------------------------


async def test_a_flac_recording_is_stored_as_such_and_verifies(store: RecordingStore) -> None:
    from recordings.flac import StereoFlacWriter

    recording_id = new_recording_id()
    path = store.storage.new_path(recording_id, T, file_format="flac")
    path.parent.mkdir(parents=True)
    writer = StereoFlacWriter(path)
    writer.append(struct.pack("<8000h", *([1000, -1000] * 4000)))
    closed = writer.close()
    result = RecordingResult(
        path=path, sha256=closed.sha256, size_bytes=closed.size_bytes, duration_s=closed.duration_s,
        paused_intervals=(), started_at=T, ended_at=T + timedelta(seconds=closed.duration_s),
        stats=AssemblerStats(), dropped_packets=0,
    )
    info = await store.add(recording_id, result, call_id="c-flac")
    assert info.path == f"2025/03/01/{recording_id}.flac"
    assert (info.file_format, info.mime_type, info.storage, info.object_key) == ("flac", "audio/flac", "file", None)
    assert not info.upload_pending
    assert await store.open_for(recording_id, actor="qa", action="play", at=T) == path
    (path.parent / "rec_crashed.flac.part").write_bytes(b"fLaC")
    assert kinds(await store.verify()) == [(ProblemKind.UNFINISHED_FILE, None)]


async def test_rows_from_before_revision_0013_become_wav_files(database_url: str, tmp_path: Path) -> None:
    from alembic import command

    from cti.db import _alembic_config

    def to(revision: str) -> Any:
        def step(connection: sa.Connection) -> None:
            config: Any = _alembic_config(database_url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        return step

    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(to("0012_routing_config"))
        # A recording written before the revision, as that schema had it.
        await sql(
            engine,
            "INSERT INTO recordings (id, seq, call_id, path, sha256, size_bytes, prev_chain_hash, chain_hash, "
            "started_at, ended_at, duration_ms, paused_intervals, retention_years, retention_until, legal_hold) "
            "VALUES ('rec_old', 1, 'c', '2024/01/01/rec_old.wav', :h, 44, :h, :h, :t, :t, 0, '[]', 5, :t, false)",
            h="0" * 64, t=T,
        )
        async with engine.begin() as connection:
            await connection.run_sync(to("heads"))
        info = await RecordingStore(make_sessionmaker(engine), FileStorage(tmp_path)).get("rec_old")
    finally:
        await engine.dispose()
    assert (info.storage, info.object_key, info.file_format, info.uploaded_at, info.upload_error) == (
        "file", None, "wav", None, None,
    )


async def test_an_s3_recording_without_an_s3_store_is_reported_not_skipped(engine: AsyncEngine, store: RecordingStore) -> None:
    from recordings.store import NoObjectStore

    recording_id = await add(store)
    await sql(
        engine, "UPDATE recordings SET storage = 's3', object_key = :key, uploaded_at = :t WHERE id = :id",
        key="recordings/x.wav", t=T, id=recording_id,
    )
    report = await store.verify(scan_storage=False)
    assert kinds(report) == [(ProblemKind.MISSING_FILE, recording_id)]
    assert "no S3 store is configured" in report.problems[0].detail
    with pytest.raises(NoObjectStore):
        await store.open_for(recording_id, actor="qa", action="play", at=T)
    assert await store.access_log() == []  # nothing handed out, nothing on record
    purge = await store.purge(add_years(T, 6))
    assert purge.purged == [] and [r for r, _ in purge.failed] == [recording_id]
    assert (await store.get(recording_id)).deleted_at is None


# --- the commands --------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ctihub")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def test_verify_command_prints_each_mismatch_and_exits_non_zero(
    engine: AsyncEngine, store: RecordingStore, database_url: str
) -> None:
    ids = [await add(store, k) for k in range(3)]
    out = io.StringIO()
    assert await cli.verify_command(database_url, store.storage.root, out=out) == 0
    assert "checked 3 recording(s)" in out.getvalue() and "0 mismatch(es)" in out.getvalue()
    store.storage.resolve((await store.get(ids[0])).path).unlink()
    await sql(engine, "UPDATE recordings SET duration_ms = 5 WHERE id = :id", id=ids[2])
    out = io.StringIO()
    assert await cli.verify_command(database_url, store.storage.root, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == f"MISMATCH missing_file: recording {ids[0]}: {(await store.get(ids[0])).path} is missing"
    assert lines[1].startswith(f"MISMATCH altered_record: recording {ids[2]}:")
    assert lines[2].endswith("2 mismatch(es)")


async def test_purge_command_prints_what_it_purged_and_kept(store: RecordingStore, database_url: str) -> None:
    a, b = await add(store, 1), await add(store, 2)
    await store.set_legal_hold(b, actor="c", reason="case 9", at=T)
    out = io.StringIO()
    code = await cli.purge_command(database_url, store.storage.root, now=add_years(T, 5) + timedelta(days=1), out=out)
    assert code == 0
    text = out.getvalue()
    assert f"purged {a} " in text and f"kept {b}: legal hold" in text and "1 purged, 1 on legal hold, 0 failed" in text


def test_the_commands_parse_and_run_from_argv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/hub.db"

    async def prepare() -> None:
        engine = make_engine(url)
        await migrate(engine)
        await engine.dispose()

    asyncio.run(prepare())
    args = parse(["recordings", "verify", "--database-url", url, "--recordings-dir", str(tmp_path / "rec")])
    assert cli.run(args, environ={}) == 0
    assert "checked 0 recording(s)" in capsys.readouterr().out
    args = parse(["recordings", "purge", "--data-dir", str(tmp_path), "--database-url", url])
    assert cli.run(args, environ={}) == 0
    args = parse(["recordings", "verify", "--database-url", f"sqlite+aiosqlite:///{tmp_path}/empty.db"])
    assert cli.run(args, environ={}) == 2  # no schema: unusable, not "no mismatch"
