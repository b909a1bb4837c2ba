"""Retention of recordings through the hub: an admin puts a legal hold on a recording or
extends how long it is kept; the hub's purge job deletes what is past retention, keeps
what is on hold, and the lifecycle log says what was deleted, by whom and when."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cti.app import Hub
from recordings.purge_job import PurgeJob
from tests.e2e.harness import running_hub
from tests.e2e.test_qa_api import add_recording, hub_store, users

LONG_AGO = datetime.now(UTC) - timedelta(days=8 * 365)  # past the default five years


async def test_legal_hold_and_extension_by_role_and_field(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, users(hub, "admin", "qa1", "super1", "agent01") as api:
        recording = await add_recording(hub, agent_id="agent01", at=datetime.now(UTC) - timedelta(days=1))
        path = f"/api/recordings/{recording}/legal-hold"
        for name in ("qa1", "super1", "agent01"):
            status, body = await api[name].post(path, {"reason": "case 42"})
            assert (status, body["permission"]) == (403, "recordings.retention"), name
        status, body = await api["admin"].post(path, {})
        assert (status, body["field"]) == (422, "reason")
        status, body = await api["admin"].post("/api/recordings/rec_nope/legal-hold", {"reason": "case 42"})
        assert (status, body["error"]) == (404, "unknown_recording")
        status, body = await api["admin"].post(path, {"reason": "FCA enquiry 2026/17"})
        assert status == 200 and body["legal_hold"] is True and body["legal_hold_reason"] == "FCA enquiry 2026/17"

        info = await hub_store(hub).get(recording)
        extend = f"/api/recordings/{recording}/retention"
        status, body = await api["admin"].post(extend, {"until": (info.retention_until - timedelta(days=1)).isoformat()})
        assert (status, body["field"]) == (422, "until") and "never shortened" in body["detail"]
        status, body = await api["admin"].post(extend, {"until": (info.ended_at + timedelta(days=8 * 366)).isoformat()})
        assert (status, body["field"]) == (422, "until") and "beyond 7 years" in body["detail"]
        status, body = await api["admin"].post(extend, {"until": "soon"})
        assert (status, body["field"]) == (422, "until")
        wanted = info.retention_until + timedelta(days=365)
        status, body = await api["admin"].post(extend, {"until": wanted.isoformat()})
        assert status == 200 and datetime.fromisoformat(body["retention_until"]) == wanted

        status, body = await api["admin"].post(f"{path}/release", {"reason": "enquiry closed"})
        assert status == 200 and body["legal_hold"] is False
        status, body = await api["admin"].get(f"/api/recordings/events?recording_id={recording}")
        assert status == 200
        assert [(e["action"], e["actor"]) for e in body["events"]] == [
            ("legal_hold_set", "admin"), ("retention_extended", "admin"), ("legal_hold_cleared", "admin"),
        ]
        status, body = await api["qa1"].get("/api/recordings/events")
        assert (status, body["permission"]) == (403, "recordings.audit")
        status, body = await api["admin"].get("/api/recordings/events?action=erased")
        assert (status, body["field"]) == (422, "action")


async def purged_ids(hub: Hub, api_get: object) -> list[str]:
    status, body = await api_get("/api/recordings/events?action=purged")  # type: ignore[operator]
    assert status == 200
    return [e["recording_id"] for e in body["events"]]


async def test_the_purge_job_deletes_what_is_due_and_keeps_what_is_held(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, users(hub, "admin") as api:
        assert hub.purge_job is not None, "the hub runs its purge job by default"
        due = await add_recording(hub, agent_id="agent01", at=LONG_AGO)
        held = await add_recording(hub, agent_id="agent01", at=LONG_AGO)
        recent = await add_recording(hub, agent_id="agent01", at=datetime.now(UTC) - timedelta(days=30))
        status, _ = await api["admin"].post(f"/api/recordings/{held}/legal-hold", {"reason": "litigation hold L-9"})
        assert status == 200

        # A job of its own with a short cadence: the hub's first run is a minute after start.
        job = PurgeJob(hub_store(hub), every_s=0.1, first_after_s=0.05)
        job.start()
        try:
            async with asyncio.timeout(10):
                while job.runs < 2:
                    await asyncio.sleep(0.05)
        finally:
            await job.stop()
        assert job.last_report is not None
        assert await purged_ids(hub, api["admin"].get) == [due], "purged once, whatever the number of runs"
        store = hub_store(hub)
        assert (await store.get(held)).deleted_at is None and (await store.get(recent)).deleted_at is None
        status, body = await api["admin"].get(f"/api/recordings/{due}/audio")
        assert status == 410
        status, body = await api["admin"].get(f"/api/recordings/events?recording_id={due}")
        purge = body["events"][-1]
        assert (purge["action"], purge["actor"]) == ("purged", "retention job")

        status, _ = await api["admin"].post(f"/api/recordings/{held}/legal-hold/release", {"reason": "settled"})
        assert status == 200
        report = await hub.purge_job.run_once()
        assert [p.id for p in report.purged] == [held]
        assert await purged_ids(hub, api["admin"].get) == [due, held]
