"""RecordingStore with the S3 store, against a real S3-compatible server (moto's, in a
process of its own, over HTTP) and real databases (SQLite and PostgreSQL): the upload
from the spool and its checks, playback through a presigned URL with Range requests,
purge and legal hold in the bucket, verify catching an altered, a missing and a stray
object, and an upload that fails and is retried without losing the recording."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cti.db import make_engine, make_sessionmaker, migrate
from recordings import cli
from recordings.integrity import ProblemKind
from recordings.policy import RecordingPolicy, add_years
from recordings.s3_storage import S3Storage, S3StorageError
from recordings.service import RecordingService
from recordings.storage import FileStorage, new_recording_id
from recordings.store import RecordingPurged, RecordingStore, UploadOutcome
from tests.browser.conftest import browser, chromium_path  # noqa: F401  (fixtures for the Chromium test)
from tests.conftest import S3_TEST_KEYS
from tests.contract.test_recordings_store import T, kinds, write_file

PREFIX = "recordings/"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


def s3_storage(endpoint: str, bucket: str, **options: Any) -> S3Storage:
    return S3Storage(
        bucket=bucket, endpoint=endpoint, prefix=PREFIX,
        access_key=S3_TEST_KEYS["AWS_ACCESS_KEY_ID"], secret_key=S3_TEST_KEYS["AWS_SECRET_ACCESS_KEY"], **options,
    )


@pytest.fixture
def client(s3_endpoint: str) -> Any:
    """The test's own S3 client, to look at and tamper with the bucket directly."""
    return boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id=S3_TEST_KEYS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=S3_TEST_KEYS["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def store(engine: AsyncEngine, tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> RecordingStore:
    return RecordingStore(make_sessionmaker(engine), FileStorage(tmp_path / "spool"), s3_storage(s3_endpoint, s3_bucket))


async def add(store: RecordingStore, k: int = 0, *, seconds: float = 0.5, upload: bool = True) -> str:
    recording_id = new_recording_id()
    result = write_file(store.storage, recording_id, T + timedelta(minutes=k), seconds=seconds)
    await store.add(recording_id, result, call_id=f"call-{k}", policy=RecordingPolicy(), queue="sales", agent_id="alice")
    if upload:
        assert await store.upload(recording_id) is UploadOutcome.UPLOADED
    return recording_id


def objects_in(client: Any, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", []))


# --- the upload --------------------------------------------------------------------


async def test_a_recording_waits_in_the_spool_then_goes_to_the_bucket_checked(
    store: RecordingStore, client: Any, s3_bucket: str
) -> None:
    recording_id = await add(store, upload=False)
    info = await store.get(recording_id)
    local = store.storage.resolve(info.path)
    key = f"{PREFIX}{info.path}"
    assert info.storage == "s3" and info.object_key == key and info.file_format == "wav"
    assert info.upload_pending and local.is_file() and objects_in(client, s3_bucket) == []
    assert [p.id for p in await store.pending_uploads()] == [recording_id]
    # While it waits, it verifies (in the spool) and plays from the local file.
    report = await store.verify()
    assert report.ok, kinds(report)
    assert [p.id for p in report.pending_uploads] == [recording_id]
    assert await store.open_for(recording_id, actor="qa", action="play", at=T) == local
    content = local.read_bytes()

    assert await store.upload(recording_id) is UploadOutcome.UPLOADED
    assert not local.exists() and list(store.storage.files()) == []
    stored = client.get_object(Bucket=s3_bucket, Key=key)
    assert stored["Body"].read() == content
    assert stored["ContentType"] == "audio/wav" and stored["Metadata"]["sha256"] == info.sha256
    after = await store.get(recording_id)
    assert after.uploaded_at is not None and not after.upload_pending and after.upload_error is None
    assert await store.pending_uploads() == []
    assert await store.upload(recording_id) is UploadOutcome.NOTHING_TO_DO
    report = await store.verify()
    assert report.ok and report.checked == 1 and report.pending_uploads == []


async def test_a_presigned_url_serves_range_requests_and_the_access_is_on_record(
    store: RecordingStore, client: Any, s3_bucket: str
) -> None:
    recording_id = await add(store, seconds=1.0)
    info = await store.get(recording_id)
    url = await store.open_for(recording_id, actor="qa.jane", action="play", at=T, client="10.0.0.5")
    assert isinstance(url, str) and url.startswith("http://127.0.0.1:")
    content = client.get_object(Bucket=s3_bucket, Key=info.object_key)["Body"].read()
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Range": "bytes=100-1123"}) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == f"bytes 100-1123/{info.size_bytes}"
            assert response.headers["Content-Type"] == "audio/wav"
            assert await response.read() == content[100:1124]
        async with http.get(url) as response:
            assert response.status == 200 and len(await response.read()) == info.size_bytes
    [entry] = await store.access_log()
    assert (entry.recording_id, entry.actor, entry.action, entry.client) == (recording_id, "qa.jane", "play", "10.0.0.5")


async def test_a_big_file_goes_up_in_parts_and_is_checked(
    engine: AsyncEngine, tmp_path: Path, s3_endpoint: str, s3_bucket: str, client: Any
) -> None:
    store = RecordingStore(
        make_sessionmaker(engine), FileStorage(tmp_path / "spool"),
        s3_storage(s3_endpoint, s3_bucket, part_bytes=5 * 1024 * 1024),
    )
    recording_id = await add(store, seconds=200, upload=False)  # 6.4 MB: two parts
    info = await store.get(recording_id)
    content = store.storage.resolve(info.path).read_bytes()
    assert await store.upload(recording_id) is UploadOutcome.UPLOADED
    assert client.get_object(Bucket=s3_bucket, Key=info.object_key)["Body"].read() == content
    assert (await store.verify()).ok


async def test_an_upload_that_got_as_far_as_the_bucket_is_found_there(store: RecordingStore) -> None:
    recording_id = await add(store, upload=False)
    info = await store.get(recording_id)
    assert store.objects is not None and info.object_key is not None
    # As if the hub died after the object was checked and the spool copy deleted,
    # before the row was marked.
    local = store.storage.resolve(info.path)
    store.objects.upload(local, info.object_key, sha256=info.sha256, content_type="audio/wav")
    local.unlink()
    assert (await store.verify()).ok  # checked in the bucket meanwhile
    assert await store.upload(recording_id) is UploadOutcome.FOUND
    assert (await store.get(recording_id)).uploaded_at is not None


async def test_a_spool_file_changed_after_it_closed_is_not_uploaded(store: RecordingStore, client: Any, s3_bucket: str) -> None:
    recording_id = await add(store, upload=False)
    local = store.storage.resolve((await store.get(recording_id)).path)
    local.chmod(0o640)
    data = bytearray(local.read_bytes())
    data[500] ^= 0x01
    local.write_bytes(bytes(data))
    with pytest.raises(S3StorageError, match="no longer has the SHA-256"):
        await store.upload(recording_id)
    assert local.is_file() and objects_in(client, s3_bucket) == []
    info = await store.get(recording_id)
    assert info.upload_pending and "no longer has the SHA-256" in (info.upload_error or "")
    assert kinds(await store.verify()) == [(ProblemKind.ALTERED_FILE, recording_id)]


# --- a bucket that fails -------------------------------------------------------------


class NoTaps:
    def add_tap(self, call_id: str, tap: object) -> bool:
        return False

    def remove_tap(self, call_id: str, tap: object) -> None:
        pass


async def test_a_failing_bucket_keeps_the_file_reports_it_and_the_retry_sends_it(
    engine: AsyncEngine, tmp_path: Path, s3_endpoint: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = "ctihub-t-late-" + new_recording_id()[4:16]  # created only later
    store = RecordingStore(make_sessionmaker(engine), FileStorage(tmp_path / "spool"), s3_storage(s3_endpoint, bucket))
    recording_id = await add(store, upload=False)
    info = await store.get(recording_id)
    local = store.storage.resolve(info.path)
    service = RecordingService(
        store=store, taps=NoTaps(), policies={}, default_policy=RecordingPolicy(), publish=lambda event: None,
        upload_backoff_s=(0.2,),
    )
    service.resume_uploads()  # what the hub does at start-up
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (await store.get(recording_id)).upload_error:
        assert loop.time() < deadline, "the failed upload was not noted on the recording"
        await asyncio.sleep(0.05)
    assert local.is_file() and service.uploads_in_progress == 1
    assert "NoSuchBucket" in (await store.get(recording_id)).upload_error  # type: ignore[operator]
    assert any("stays in the spool" in r.getMessage() for r in caplog.records)
    # verify cannot list a missing bucket: unusable (2), never "no mismatch".
    url = engine.url.render_as_string(hide_password=False)
    assert await cli.verify_command(url, store.storage.root, out=io.StringIO(), objects=store.objects) == 2
    client.create_bucket(Bucket=bucket)
    while (await store.get(recording_id)).upload_pending:
        assert loop.time() < deadline + 10, "the retry did not send the recording"
        await asyncio.sleep(0.05)
    assert not local.exists() and objects_in(client, bucket) == [info.object_key]
    assert (await store.get(recording_id)).upload_error is None
    await service.drain()
    assert (await store.verify()).ok


# --- purge and legal hold ------------------------------------------------------------


async def test_purge_deletes_the_object_and_a_legal_hold_keeps_it(store: RecordingStore, client: Any, s3_bucket: str) -> None:
    kept, held, pending = await add(store, 1), await add(store, 2), await add(store, 3, upload=False)
    await store.set_legal_hold(held, actor="compliance", reason="case 2031-17", at=T)
    now = add_years(T, 5) + timedelta(days=1)
    report = await store.purge(now, actor="nightly")
    assert sorted(p.id for p in report.purged) == sorted([kept, pending]) and report.held == [held]
    assert all(p.file_deleted for p in report.purged)
    assert objects_in(client, s3_bucket) == [(await store.get(held)).object_key]
    assert list(store.storage.files()) == []  # the pending one's spool copy went too
    report_after = await store.verify()
    assert report_after.ok, kinds(report_after)
    with pytest.raises(RecordingPurged):
        await store.open_for(kept, actor="qa", action="play", at=now)
    # An interrupted purge (row marked, object left) is reported, then swept.
    await store.clear_legal_hold(held, actor="compliance", reason="closed", at=now)
    info = await store.get(held)
    body = client.get_object(Bucket=s3_bucket, Key=info.object_key)["Body"].read()
    assert [p.id for p in (await store.purge(now)).purged] == [held]
    client.put_object(Bucket=s3_bucket, Key=info.object_key, Body=body)
    assert kinds(await store.verify()) == [(ProblemKind.PURGED_FILE_PRESENT, held)]
    assert (await store.purge(now)).swept == [held]
    assert objects_in(client, s3_bucket) == [] and (await store.verify()).ok


# --- verify ----------------------------------------------------------------------------


async def test_verify_catches_an_altered_a_missing_and_a_stray_object(
    store: RecordingStore, client: Any, s3_bucket: str, database_url: str
) -> None:
    ids = [await add(store, k) for k in range(3)]
    altered, gone = await store.get(ids[0]), await store.get(ids[2])
    body = bytearray(client.get_object(Bucket=s3_bucket, Key=altered.object_key)["Body"].read())
    body[1000] ^= 0x01
    client.put_object(Bucket=s3_bucket, Key=altered.object_key, Body=bytes(body), Metadata={"sha256": altered.sha256})
    client.delete_object(Bucket=s3_bucket, Key=gone.object_key)
    client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}2025/03/01/rec_stranger.wav", Body=b"RIFF")
    client.put_object(Bucket=s3_bucket, Key="elsewhere/not-ours.txt", Body=b"x")  # outside the prefix
    assert kinds(await store.verify()) == [
        (ProblemKind.ALTERED_FILE, ids[0]),
        (ProblemKind.MISSING_FILE, ids[2]),
        (ProblemKind.UNREGISTERED_FILE, None),
    ]
    out = io.StringIO()
    assert await cli.verify_command(database_url, store.storage.root, out=out, objects=store.objects) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"MISMATCH altered_file: recording {ids[0]}: s3://{s3_bucket}/{altered.object_key} has SHA-256")
    assert lines[1] == f"MISMATCH missing_file: recording {ids[2]}: s3://{s3_bucket}/{gone.object_key} is missing"
    assert lines[2] == f"MISMATCH unregistered_file: storage: s3://{s3_bucket}/{PREFIX}2025/03/01/rec_stranger.wav belongs to no recording"
    assert lines[3].endswith("3 mismatch(es)")


async def test_the_commands_work_on_the_bucket_from_the_settings(
    store: RecordingStore, s3_endpoint: str, s3_bucket: str, database_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], client: Any,
) -> None:
    recording_id = await add(store)
    environ = {
        "CTIHUB_RECORDINGS_STORE": "s3", "CTIHUB_S3_ENDPOINT": s3_endpoint, "CTIHUB_S3_BUCKET": s3_bucket,
        "CTIHUB_RECORDINGS_DIR": str(store.storage.root), "CTIHUB_DATABASE_URL": database_url, **S3_TEST_KEYS,
    }
    args = cli_args(["recordings", "verify", "--data-dir", str(tmp_path)])
    code = await asyncio.to_thread(cli.run, args, environ=environ)
    assert code == 0, capsys.readouterr().out
    assert "checked 1 recording(s)" in capsys.readouterr().out
    client.delete_object(Bucket=s3_bucket, Key=(await store.get(recording_id)).object_key)
    assert await asyncio.to_thread(cli.run, args, environ=environ) == 1
    assert "missing_file" in capsys.readouterr().out
    # Half of the credentials: the command stops, naming the setting.
    half = {k: v for k, v in environ.items() if k != "AWS_SECRET_ACCESS_KEY"}
    assert await asyncio.to_thread(cli.run, args, environ=half) == 2
    assert "CTIHUB_S3_SECRET_KEY_ENV" in capsys.readouterr().err


def cli_args(argv: list[str]) -> Any:
    import argparse

    parser = argparse.ArgumentParser(prog="ctihub")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


# --- Chromium plays what the store hands out -----------------------------------------------


async def test_chromium_plays_a_flac_recording_from_its_presigned_url(
    browser: Any,  # noqa: F811 -- the fixture imported above
    tmp_path: Path, s3_endpoint: str, s3_bucket: str,
) -> None:
    """The compressed format is only an option if the QA player can play it: the
    system's Chromium loads a FLAC recording from a presigned URL in an <audio>
    element (fetching it with Range requests from the bucket) and plays it."""
    from recordings.flac import StereoFlacWriter
    from tests.unit.test_recordings_flac import speechlike

    path = tmp_path / "r.flac"
    writer = StereoFlacWriter(path)
    writer.append(speechlike(3 * 8000, seed=5))
    closed = writer.close()
    objects = s3_storage(s3_endpoint, s3_bucket)
    key = objects.key_for("2025/03/01/r.flac")
    await asyncio.to_thread(objects.upload, path, key, sha256=closed.sha256, content_type="audio/flac")
    url = objects.presigned_get(key, content_type="audio/flac")
    page = await browser.new_page()
    await page.set_content("<audio id=player muted preload=auto></audio>")
    played = await page.evaluate(
        """async (url) => {
            const audio = document.getElementById("player");
            const can = audio.canPlayType("audio/flac");
            audio.src = url;
            const playing = new Promise((resolve, reject) => {
                audio.addEventListener("timeupdate", () => { if (audio.currentTime > 0.5) resolve(); });
                audio.addEventListener("error", () => reject(new Error("media error " + audio.error.code)));
            });
            await audio.play();
            await Promise.race([playing, new Promise((_, reject) => setTimeout(() => reject(new Error("stalled")), 10000))]);
            return {can, duration: audio.duration, error: audio.error};
        }""",
        url,
    )
    assert played["can"] in ("maybe", "probably") and played["error"] is None
    assert played["duration"] == pytest.approx(closed.duration_s, abs=0.05)
