"""A real call recorded in FLAC and kept in an S3-compatible store.

The hub runs with CTIHUB_RECORDINGS_STORE=s3 against moto's S3 server (a process of its
own, over HTTP) and CTIHUB_RECORDING_FORMAT=flac. sipp plays G.711 A-law speech as the
caller; a sipp phone answers as the agent and echoes it. The recording is written to
the spool as the call goes, uploaded when it closes, and the spool is left empty; the
object, fetched through the presigned URL the QA player would get, decodes to two
channels carrying the speech with an exactly silent PCI pause, and verify passes.
A hub that starts with recordings left in its spool uploads them.
"""

from __future__ import annotations

import asyncio
import io
import struct
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
import soundfile

from cti.db import make_sessionmaker
from recordings.s3_storage import S3Storage
from recordings.storage import FileStorage
from recordings.store import RecordingStore
from tests.conftest import S3_TEST_KEYS
from tests.e2e.harness import agent, running_hub, start_sipp
from tests.e2e.phones import G711A_PCAP, register_phone, start_phone
from tests.unit.test_recordings_assembler import rms

pytestmark = pytest.mark.sipp

LENA = "+4930901820"


async def test_a_call_is_recorded_in_flac_uploaded_to_s3_and_verifies(
    sipp_path: str, tmp_path: Path, s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not G711A_PCAP.exists():
        pytest.fail(f"{G711A_PCAP} (from sip-tester) is needed for the recording test")
    for name, value in S3_TEST_KEYS.items():  # the hub reads its S3 keys from the environment
        monkeypatch.setenv(name, value)
    environ = {
        "CTIHUB_RECORDING_FORMAT": "flac",
        "CTIHUB_RECORDINGS_STORE": "s3",
        "CTIHUB_S3_ENDPOINT": s3_endpoint,
        "CTIHUB_S3_BUCKET": s3_bucket,
        "CTIHUB_S3_PREFIX": "calls",
    }
    async with running_hub(tmp_path, sip_digest_algorithms="MD5", environ=environ) as hub, \
            agent(hub, "agent01") as desk:
        spool = FileStorage(hub.settings.effective_recordings_dir)
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", rtp_echo=True)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        loop = asyncio.get_running_loop()
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_rtp.xml", service="1000", caller=LENA, hold_ms=5000)
        pop = await desk.wait_for("screen_pop")
        call_id, contact_id = pop["call_id"], pop["contact_id"]
        await desk.wait_for("call.answered", timeout=10)
        bridged_at = loop.time()
        await desk.wait_for("recording.started", call_id=call_id)
        await asyncio.sleep(1.5)
        # While the call goes on, the recording grows in the spool.
        [growing] = list(spool.files())
        assert growing.endswith(".flac.part")
        await desk.send({"type": "recording_pause", "contact_id": contact_id})
        await desk.wait_for("recording_status", request="recording_pause")
        await asyncio.sleep(1.0)
        await desk.send({"type": "recording_resume", "contact_id": contact_id})
        await desk.wait_for("recording_status", request="recording_resume")

        await desk.wait_for("call.ended", call_id=call_id, timeout=15)
        ended_at = loop.time()
        stored = (await desk.wait_for("recording.stored", call_id=call_id, timeout=10))["data"]
        assert (await call.finish())[0] == 0
        assert (await phone.finish())[0] == 0

        objects = S3Storage(
            bucket=s3_bucket, endpoint=s3_endpoint, prefix="calls",
            access_key=S3_TEST_KEYS["AWS_ACCESS_KEY_ID"], secret_key=S3_TEST_KEYS["AWS_SECRET_ACCESS_KEY"],
        )
        assert hub.engine is not None
        store = RecordingStore(make_sessionmaker(hub.engine), spool, objects)
        deadline = loop.time() + 15
        while (info := await store.get(stored["recording_id"])).upload_pending:
            assert loop.time() < deadline, f"not uploaded: {info.upload_error}"
            await asyncio.sleep(0.1)
        assert list(spool.files()) == []  # the spool is empty once the object is checked
        assert info.storage == "s3" and info.file_format == "flac" and info.upload_error is None
        assert info.object_key == f"calls/{info.path}" and info.path.endswith(".flac")
        assert abs(info.duration_s - (ended_at - bridged_at)) < 0.2
        client: Any = boto3.client(
            "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
            aws_access_key_id=S3_TEST_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_TEST_KEYS["AWS_SECRET_ACCESS_KEY"],
        )
        listed = client.list_objects_v2(Bucket=s3_bucket)["Contents"]
        assert [(o["Key"], o["Size"]) for o in listed] == [(info.object_key, info.size_bytes)]

        # What the QA player gets: a presigned URL; the FLAC it serves is the recording.
        url = await store.open_for(info.id, actor="qa1", action="play", at=info.ended_at)
        assert isinstance(url, str)
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200 and response.headers["Content-Type"] == "audio/flac"
            flac = await response.read()
        pcm, rate = soundfile.read(io.BytesIO(flac), dtype="int16")
        assert rate == 8000 and pcm.shape[1] == 2
        left = list(struct.unpack(f"<{pcm.shape[0]}h", pcm[:, 0].astype("<i2").tobytes()))
        right = list(struct.unpack(f"<{pcm.shape[0]}h", pcm[:, 1].astype("<i2").tobytes()))
        assert abs(len(left) - info.duration_s * 8000) <= 8  # the row keeps whole milliseconds
        # Speech on both sides before the pause: the caller's, and the phone's echo of it.
        assert rms(left[800:8000]) > 100 and rms(right[800:8000]) > 100
        [(pause_start, pause_end)] = info.paused_intervals
        assert pause_end - pause_start == pytest.approx(1.0, abs=0.15)
        silent = slice(round(pause_start * 8000) + 80, round(pause_end * 8000) - 80)
        assert set(left[silent]) == {0} == set(right[silent])  # lossless: exact silence
        assert rms(left[round(pause_end * 8000) + 800 :]) > 100
        report = await store.verify()
        assert report.ok, report.problems
        assert report.checked == 1 and report.pending_uploads == []


async def test_a_hub_starting_with_recordings_left_in_its_spool_uploads_them(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a hub that stopped before its uploads finished (or while the bucket was
    down) left in the spool goes to the bucket when the next hub process starts."""
    from cti.db import make_engine, migrate
    from tests.contract.test_recordings_store import T, write_file

    for name, value in S3_TEST_KEYS.items():
        monkeypatch.setenv(name, value)
    spool = FileStorage(tmp_path / "var" / "recordings")
    objects = S3Storage(
        bucket=s3_bucket, endpoint=s3_endpoint, prefix="recordings/",
        access_key=S3_TEST_KEYS["AWS_ACCESS_KEY_ID"], secret_key=S3_TEST_KEYS["AWS_SECRET_ACCESS_KEY"],
    )
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'ctihub.db'}")
    (tmp_path / "var").mkdir()
    await migrate(engine)
    earlier = RecordingStore(make_sessionmaker(engine), spool, objects)
    left = []
    for k in range(2):
        recording_id = f"rec_left{k}"
        result = write_file(spool, recording_id, T, seconds=0.5)
        await earlier.add(recording_id, result, call_id=f"call-{k}")
        left.append(recording_id)
    await engine.dispose()
    assert len(list(spool.files())) == 2

    environ = {"CTIHUB_RECORDINGS_STORE": "s3", "CTIHUB_S3_ENDPOINT": s3_endpoint, "CTIHUB_S3_BUCKET": s3_bucket}
    async with running_hub(tmp_path, environ=environ) as hub:
        assert hub.engine is not None
        store = RecordingStore(make_sessionmaker(hub.engine), spool, objects)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while await store.pending_uploads():
            assert loop.time() < deadline, "the spool's leftovers were not uploaded at start-up"
            await asyncio.sleep(0.1)
        assert list(spool.files()) == []
        expected = sorted([f"recordings/{(await store.get(r)).path}" for r in left])
        assert sorted(objects.listed_keys()) == expected
        assert (await store.verify()).ok
