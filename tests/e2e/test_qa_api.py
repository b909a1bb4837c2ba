"""The QA console's API against a real hub: a call recorded by the hub itself is found,
played with Range requests, drawn as a waveform with its PCI pause silent, and every play
is in the admins' audit trail; roles; forms, evaluations and pinned comments; an agent
reads their own evaluations and nobody else's; the CSV export; every bad parameter is
refused naming it.

The call test uses sipp (a caller talking, a phone echoing); the others write recordings
through the hub's RecordingStore into its recordings folder, which is much faster.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import math
import struct
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crm_sync.schema import Interaction
from cti.app import Hub
from cti.db import make_sessionmaker
from recordings.assembler import AssemblerStats
from recordings.policy import PausedInterval
from recordings.recorder import RecordingResult
from recordings.storage import FileStorage, new_recording_id
from recordings.store import RecordingStore
from tests.e2e.harness import agent, http_base, running_hub, start_sipp
from tests.e2e.phones import G711A_PCAP, register_phone, start_phone

LENA = "+4930901820"  # demo customer cus_demo_lena, Lena Hoffmann; the sales queue records
T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
FORM = {
    "name": "Sales call",
    "sections": [
        {"id": "opening", "title": "Opening", "weight": 1, "questions": [
            {"id": "greeting", "text": "Greeted the caller by name", "kind": "yes_no", "weight": 2},
            {"id": "rapport", "text": "Built rapport", "kind": "scale", "scale_max": 5, "na_allowed": True},
        ]},
        {"id": "compliance", "title": "Compliance", "weight": 3, "questions": [
            {"id": "risk_warning", "text": "Read the risk warning", "kind": "yes_no", "na_allowed": True},
        ]},
    ],
}


# --- helpers -------------------------------------------------------------------------


class Api:
    """One user's HTTP client (bearer token)."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http, self.base, self.token = http, base, token

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        async with self.http.request(method, self.base + path, headers=headers, allow_redirects=False, **kwargs) as resp:
            raw = await resp.read()
            body: Any = raw
            if resp.content_type == "application/json":
                body = await resp.json()
            return resp.status, body, resp

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, body, _ = await self.call("GET", path, **kwargs)
        return status, body

    async def post(self, path: str, json: Any) -> tuple[int, Any]:
        status, body, _ = await self.call("POST", path, json=json)
        return status, body


@asynccontextmanager
async def users(hub: Hub, *names: str) -> AsyncIterator[dict[str, Api]]:
    base = http_base(hub)
    async with aiohttp.ClientSession() as http:
        apis: dict[str, Api] = {}
        for name in names:
            async with http.post(f"{base}/api/login", json={"username": name, "password": "demo"}) as resp:
                body = await resp.json()
                assert resp.status == 200, body
            apis[name] = Api(http, base, body["token"])
        yield apis


def hub_store(hub: Hub) -> RecordingStore:
    assert hub.engine is not None
    return RecordingStore(make_sessionmaker(hub.engine), FileStorage(hub.settings.effective_recordings_dir))


def tone_frames(seconds: float, *, silent: tuple[float, float] | None = None) -> bytes:
    """Stereo 16-bit: a 400 Hz tone at 8000 on the left (caller) and 4000 on the right
    (agent), silence in `silent` (start_s, end_s) like a PCI pause."""
    period = b"".join(  # 400 Hz at 8 kHz: 20 samples
        struct.pack("<hh", round(8000 * math.sin(2 * math.pi * n / 20)), round(4000 * math.sin(2 * math.pi * n / 20)))
        for n in range(20)
    )
    frames = round(seconds * 8000)
    data = bytearray((period * (frames // 20 + 1))[: 4 * frames])
    if silent is not None:
        start, end = round(silent[0] * 8000), round(silent[1] * 8000)
        data[4 * start: 4 * end] = bytes(4 * (end - start))
    return bytes(data)


async def add_recording(
    hub: Hub, *, agent_id: str, queue: str = "sales", at: datetime = T0, seconds: float = 2.0,
    paused: tuple[float, float] | None = None, raw: bytes | None = None,
) -> str:
    """A finished recording in the hub's store, as the recorder would register it."""
    store = hub_store(hub)
    recording_id = new_recording_id()
    path = store.storage.new_path(recording_id, at)
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is None:
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(tone_frames(seconds, silent=paused))
    else:
        path.write_bytes(raw)
    data = path.read_bytes()
    result = RecordingResult(
        path=path, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), duration_s=seconds,
        paused_intervals=(PausedInterval(start=round(paused[0] * 8000), end=round(paused[1] * 8000)),) if paused else (),
        started_at=at, ended_at=at + timedelta(seconds=seconds), stats=AssemblerStats(), dropped_packets=0,
    )
    await store.add(recording_id, result, call_id=f"call-{recording_id}", queue=queue, agent_id=agent_id)
    return recording_id


async def add_interaction(hub: Hub, recording_id: str, *, customer_id: str | None, disposition: str, notes: str | None = None) -> None:
    store = hub_store(hub)
    info = await store.get(recording_id)
    interaction_id = "int_" + recording_id[4:]
    assert hub.engine is not None
    async with make_sessionmaker(hub.engine)() as session, session.begin():
        session.add(Interaction(
            id=interaction_id, customer_id=customer_id, channel="voice", direction="inbound", caller_number=LENA,
            queue=info.queue, agent_id=info.agent_id, started_at=info.started_at, ended_at=info.ended_at,
            outcome="completed", disposition=disposition, notes=notes, call_id=info.call_id, recording_id=recording_id,
        ))
    await store.link_interaction(info.call_id, interaction_id, at=info.ended_at)


# --- a call recorded by the hub ------------------------------------------------------


@pytest.mark.sipp
async def test_a_recorded_call_is_found_played_in_ranges_drawn_and_audited(sipp_path: str, tmp_path: Path) -> None:
    if not G711A_PCAP.exists():
        pytest.fail(f"{G711A_PCAP} (from sip-tester) is needed for the recording test")
    async with running_hub(tmp_path, sip_digest_algorithms="MD5") as hub, agent(hub, "agent01") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", rtp_echo=True)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_rtp.xml", service="1000", caller=LENA, hold_ms=4000)
        pop = await desk.wait_for("screen_pop")
        call_id, contact_id = pop["call_id"], pop["contact_id"]
        await desk.wait_for("call.answered", timeout=10)
        await desk.wait_for("recording.started", call_id=call_id)
        await asyncio.sleep(1.2)
        await desk.send({"type": "recording_pause", "contact_id": contact_id})
        assert (await desk.wait_for("recording_status", request="recording_pause"))["paused"] is True
        await asyncio.sleep(1.0)
        await desk.send({"type": "recording_resume", "contact_id": contact_id})
        await desk.wait_for("recording_status", request="recording_resume")
        await desk.wait_for("call.ended", call_id=call_id, timeout=15)
        recording_id = (await desk.wait_for("recording.stored", call_id=call_id, timeout=10))["data"]["recording_id"]
        interaction_id = (await desk.wait_for("interaction.recorded", timeout=10))["data"]["interaction_id"]
        await desk.send({"type": "wrap_up", "interaction_id": interaction_id, "disposition": "trade_query",
                         "notes": "Asked about margin"})
        await desk.wait_for("ok", request="wrap_up")
        assert (await call.finish())[0] == 0
        assert (await phone.finish())[0] == 0

        async with users(hub, "qa1", "admin") as api:
            qa, admin = api["qa1"], api["admin"]
            # Found by what a reviewer knows: the agent, the customer's name, the disposition, today.
            today = datetime.now(UTC).date().isoformat()
            status, found = await qa.get(
                f"/api/recordings?agent=agent01&customer=hoffmann&disposition=trade_query&from={today}&to={today}"
            )
            assert status == 200, found
            [row] = found["recordings"]
            assert row["recording_id"] == recording_id and row["customer_id"] == "cus_demo_lena"
            assert row["customer_name"] == "Lena Hoffmann" and row["queue"] == "sales" and row["interaction_id"] == interaction_id
            [(pause_start, pause_end)] = row["paused_intervals"]
            assert pause_end - pause_start == pytest.approx(1.0, abs=0.2)

            status, detail = await qa.get(f"/api/recordings/{recording_id}")
            assert status == 200 and detail["paused_intervals"] == row["paused_intervals"]
            assert detail["audio_url"] == f"/api/recordings/{recording_id}/audio"

            # The whole file, then exactly the bytes of a Range.
            status, whole, resp = await qa.call("GET", detail["audio_url"])
            assert status == 200 and resp.headers["Content-Type"] == "audio/wav"
            assert resp.headers["Accept-Ranges"] == "bytes" and "no-store" in resp.headers["Cache-Control"]
            assert hashlib.sha256(whole).hexdigest() == detail["sha256"] and len(whole) == detail["size_bytes"]
            status, part, resp = await qa.call("GET", detail["audio_url"], headers={"Range": "bytes=1000-1999"})
            assert status == 206
            assert resp.headers["Content-Range"] == f"bytes 1000-1999/{len(whole)}"
            assert part == whole[1000:2000]

            # The waveform: speech on both channels, silence in the PCI pause.
            status, peaks = await qa.get(f"/api/recordings/{recording_id}/peaks?n=200")
            assert status == 200 and peaks["channels"] == ["caller", "agent"] and peaks["n"] == 200
            duration = peaks["duration_s"]
            bucket = duration / 200
            inside = range(math.ceil(pause_start / bucket) + 1, math.floor(pause_end / bucket) - 1)
            assert len(inside) > 10
            for channel in peaks["peaks"]:
                assert all(channel[i] == 0 for i in inside), [channel[i] for i in inside]
                assert max(channel[: int(pause_start / bucket)]) > 0.01  # talk before the pause

            # Both plays are on record, with who and when; the waveform is not a play.
            status, trail = await admin.get(f"/api/recordings/audit?recording={recording_id}")
            assert status == 200
            assert [(e["actor"], e["action"]) for e in trail["entries"]] == [("qa1", "play"), ("qa1", "play")]
            assert all(e["client"] == "127.0.0.1" for e in trail["entries"])


# --- roles ---------------------------------------------------------------------------


async def test_roles(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, users(hub, "agent01", "super1", "qa1", "admin") as api:
        recording_id = await add_recording(hub, agent_id="agent01")
        audio = f"/api/recordings/{recording_id}/audio"
        agent01, super1, qa, admin = api["agent01"], api["super1"], api["qa1"], api["admin"]

        # Without a session: 401 everywhere.
        async with aiohttp.ClientSession() as anonymous:
            for path in ("/api/recordings", audio, "/api/recordings/audit", "/api/evaluations?agent=me"):
                async with anonymous.get(http_base(hub) + path) as resp:
                    assert resp.status == 401, path

        # An agent: no search, no playback, no forms, no comments.
        for path in ("/api/recordings", audio, f"/api/recordings/{recording_id}", "/api/recordings/export.csv",
                     f"/api/recordings/{recording_id}/download", f"/api/recordings/{recording_id}/peaks",
                     "/api/qa/forms", "/api/recordings/audit"):
            status, body = await agent01.get(path)
            assert status == 403 and body["error"] == "forbidden", (path, body)
        status, body = await agent01.post(f"/api/recordings/{recording_id}/comments", {"offset_ms": 0, "text": "x"})
        assert status == 403

        # Forms are the admin's to define.
        status, body = await qa.post("/api/qa/forms", FORM)
        assert status == 403 and body["permission"] == "qa.forms.manage"
        status, form = await admin.post("/api/qa/forms", FORM)
        assert status == 201 and form["version"] == 1 and form["active"] is True
        answers = {"greeting": "yes", "rapport": 4, "risk_warning": "na"}

        # A supervisor plays and reads, but neither scores nor comments nor reads the audit.
        status, found = await super1.get("/api/recordings")
        assert status == 200 and [r["recording_id"] for r in found["recordings"]] == [recording_id]
        status, _, resp = await super1.call("GET", audio)
        assert status == 200
        status, body = await super1.post("/api/evaluations", {"recording_id": recording_id, "form_id": form["id"], "answers": answers})
        assert status == 403 and body["permission"] == "recordings.evaluate"
        status, body = await super1.post(f"/api/recordings/{recording_id}/comments", {"offset_ms": 0, "text": "x"})
        assert status == 403
        assert (await super1.get("/api/recordings/audit"))[0] == 403
        assert (await super1.get("/api/qa/forms"))[0] == 200

        # QA scores.
        status, evaluation = await qa.post("/api/evaluations", {"recording_id": recording_id, "form_id": form["id"],
                                                                "answers": answers, "summary": "Good call"})
        assert status == 201, evaluation
        # Opening: (2*1 + 1*0.75) / 3 = 91.67; compliance not applicable: the total is the opening.
        assert evaluation["score"] == 91.67 and evaluation["agent_id"] == "agent01" and evaluation["evaluator"] == "qa1"
        assert (await qa.get("/api/recordings/audit"))[0] == 403
        status, _, _ = await qa.call("GET", audio, headers={"Range": "bytes=0-99"})
        assert status == 206

        # The admin sees the plays just made, newest first.
        status, trail = await admin.get(f"/api/recordings/audit?recording={recording_id}")
        assert status == 200
        assert [(e["actor"], e["action"]) for e in trail["entries"]] == [("qa1", "play"), ("super1", "play")]
        status, mine = await admin.get("/api/recordings/audit?actor=super1")
        assert [e["actor"] for e in mine["entries"]] == ["super1"]
        later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        status, none = await admin.get("/api/recordings/audit", params={"since": later})
        assert status == 200 and none["entries"] == []


async def test_a_cookie_session_needs_the_csrf_token_to_write(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        recording_id = await add_recording(hub, agent_id="agent01")
        base = http_base(hub)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.post(f"{base}/api/login", json={"username": "qa1", "password": "demo"}) as resp:
                csrf = (await resp.json())["csrf_token"]
            comment = {"offset_ms": 500, "text": "Customer asks for the spread"}
            async with browser.post(f"{base}/api/recordings/{recording_id}/comments", json=comment) as resp:
                assert resp.status == 403 and (await resp.json())["error"] == "csrf_failed"
            async with browser.post(f"{base}/api/recordings/{recording_id}/comments", json=comment,
                                    headers={"X-CSRF-Token": csrf}) as resp:
                assert resp.status == 201
            async with browser.get(f"{base}/api/recordings/{recording_id}/audio") as resp:  # a GET needs none
                assert resp.status == 200


# --- forms, evaluations, comments; an agent's own evaluations ------------------------


async def test_evaluations_comments_and_an_agent_reads_only_their_own(database_url: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, database_url=database_url) as hub, users(hub, "agent01", "agent02", "qa1", "admin") as api:
        mine = await add_recording(hub, agent_id="agent01", seconds=3.0)
        theirs = await add_recording(hub, agent_id="agent02", at=T0 + timedelta(hours=1))
        qa, admin, agent01, agent02 = api["qa1"], api["admin"], api["agent01"], api["agent02"]
        status, form = await admin.post("/api/qa/forms", FORM)
        assert status == 201

        # Answers that do not fit the form are refused naming the question.
        for answers, field in (
            ({"greeting": "na", "rapport": 4, "risk_warning": "yes"}, "answers.greeting"),
            ({"greeting": "yes", "rapport": 9, "risk_warning": "yes"}, "answers.rapport"),
            ({"greeting": "yes", "rapport": 4}, "answers.risk_warning"),
            ({"greeting": "yes", "rapport": 4, "risk_warning": "yes", "smile": "yes"}, "answers.smile"),
            ("all good", "answers"),
        ):
            status, body = await qa.post("/api/evaluations", {"recording_id": mine, "form_id": form["id"], "answers": answers})
            assert status == 422 and body["field"] == field, (answers, body)
        for body_in, field, code in (
            ({"form_id": form["id"], "answers": {}}, "recording_id", 422),
            ({"recording_id": mine, "answers": {}}, "form_id", 422),
            ({"recording_id": mine, "form_id": "1", "answers": {}}, "form_id", 422),
            ({"recording_id": mine, "form_id": form["id"]}, "answers", 422),
            ({"recording_id": mine, "form_id": 999, "answers": {}}, "form_id", 404),
            ({"recording_id": "rec_nope", "form_id": form["id"], "answers": {}}, "recording_id", 404),
        ):
            status, body = await qa.post("/api/evaluations", body_in)
            assert (status, body.get("field")) == (code, field), (body_in, body)

        status, good = await qa.post("/api/evaluations", {"recording_id": mine, "form_id": form["id"],
                                                          "answers": {"greeting": "yes", "rapport": 5, "risk_warning": "yes"}})
        assert status == 201 and good["score"] == 100.0
        status, poor = await qa.post("/api/evaluations", {"recording_id": theirs, "form_id": form["id"],
                                                          "answers": {"greeting": "no", "rapport": 1, "risk_warning": "no"}})
        assert status == 201 and poor["score"] == 0.0

        # The agent sees their own evaluation, with the form to read it by, and nothing else.
        status, own = await agent01.get("/api/evaluations?agent=me")
        assert status == 200 and [e["id"] for e in own["evaluations"]] == [good["id"]]
        status, detail = await agent01.get(f"/api/evaluations/{good['id']}")
        assert status == 200 and detail["form"]["sections"][0]["questions"][0]["text"] == "Greeted the caller by name"
        status, body = await agent01.get(f"/api/evaluations/{poor['id']}")
        assert status == 404 and body["error"] == "unknown_evaluation"
        status, body = await agent01.get("/api/evaluations?agent=agent02")
        assert status == 403 and body["permission"] == "recordings.play"
        assert (await agent01.get("/api/evaluations"))[0] == 403
        assert (await agent01.get("/api/evaluations?agent=me&recording=" + theirs))[0] == 422
        assert [e["id"] for e in (await agent02.get("/api/evaluations?agent=me"))[1]["evaluations"]] == [poor["id"]]
        # Reviewers list anyone's.
        status, listed = await qa.get("/api/evaluations?agent=agent02")
        assert status == 200 and [e["id"] for e in listed["evaluations"]] == [poor["id"]]

        # Only the evaluator revises; the score follows.
        change = {"answers": {"greeting": "yes", "rapport": 1, "risk_warning": "no"}, "summary": "Re-listened"}
        status, body, _ = await admin.call("PUT", f"/api/evaluations/{poor['id']}", json=change)
        assert status == 403 and body["error"] == "not_your_evaluation"
        status, revised, _ = await qa.call("PUT", f"/api/evaluations/{poor['id']}", json=change)
        assert status == 200 and revised["score"] == 16.67 and revised["summary"] == "Re-listened"

        # Score filters in the search follow the evaluations.
        status, high = await qa.get("/api/recordings?min_score=50")
        assert [r["recording_id"] for r in high["recordings"]] == [mine]

        # Comments pinned to moments, inside the recording only.
        status, late = await qa.post(f"/api/recordings/{mine}/comments", {"offset_ms": 2500, "text": "Risk warning read"})
        assert status == 201 and late["author"] == "qa1"
        status, _ = await admin.post(f"/api/recordings/{mine}/comments", {"offset_ms": 400, "text": "Greeting"})
        assert status == 201
        for body_in, field, code in (
            ({"offset_ms": 3001, "text": "after the end"}, "offset_ms", "bad_field"),
            ({"offset_ms": -1, "text": "before"}, "offset_ms", "bad_field"),
            ({"offset_ms": 1.5, "text": "x"}, "offset_ms", "bad_field"),
            ({"text": "x"}, "offset_ms", "missing_field"),
            ({"offset_ms": 10}, "text", "missing_field"),
            ({"offset_ms": 10, "text": "  "}, "text", "missing_field"),
            ({"offset_ms": 10, "text": "x" * 2001}, "text", "bad_field"),
        ):
            status, body = await qa.post(f"/api/recordings/{mine}/comments", body_in)
            assert (status, body["error"], body["field"]) == (422, code, field), (body_in, body)
        status, detail = await qa.get(f"/api/recordings/{mine}")
        assert [(c["offset_ms"], c["author"]) for c in detail["comments"]] == [(400, "admin"), (2500, "qa1")]
        assert [e["id"] for e in detail["evaluations"]] == [good["id"]] and detail["score"] == 100.0

        # A new version of the form retires the old one; old evaluations keep theirs.
        status, v2 = await admin.post("/api/qa/forms", {**FORM, "sections": FORM["sections"][:1]})
        assert status == 201 and v2["version"] == 2
        status, forms = await qa.get("/api/qa/forms")
        assert [(f["name"], f["version"]) for f in forms["forms"]] == [("Sales call", 2)]
        status, body = await qa.post("/api/evaluations", {"recording_id": mine, "form_id": form["id"],
                                                          "answers": {"greeting": "yes", "rapport": 5, "risk_warning": "yes"}})
        assert status == 409 and body["error"] == "form_inactive"
        assert (await agent01.get(f"/api/evaluations/{good['id']}"))[1]["form_version"] == 1
        status, body = await admin.post("/api/qa/forms", {"name": "Broken", "sections": [{"id": "s", "title": "S", "questions": []}]})
        assert status == 422 and body["field"] == "sections[0].questions"


# --- CSV export and download ---------------------------------------------------------


async def test_csv_export_and_download(database_url: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, database_url=database_url) as hub, users(hub, "qa1", "admin") as api:
        qa, admin = api["qa1"], api["admin"]
        first = await add_recording(hub, agent_id="agent01", seconds=1.0)
        second = await add_recording(hub, agent_id="agent02", at=T0 + timedelta(days=1), paused=(0.5, 1.0), seconds=1.5)
        await add_interaction(hub, first, customer_id="cus_demo_lena", disposition="complaint",
                              notes='=cmd|"/c calc"!A1, then a "quote", a comma\nand a line')
        await add_interaction(hub, second, customer_id="cus_demo_oliver", disposition="trade_query", notes="+44 call back")

        status, body, resp = await qa.call("GET", "/api/recordings/export.csv")
        assert status == 200
        assert resp.headers["Content-Type"].startswith("text/csv")
        assert resp.headers["Content-Disposition"].startswith('attachment; filename="recordings-')
        text = body.decode()
        assert text.count("\r\n") >= 3  # RFC 4180 line ends (one is inside a quoted cell)
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        assert [r["recording_id"] for r in rows] == [second, first]  # newest first
        assert rows[1]["notes"] == '\'=cmd|"/c calc"!A1, then a "quote", a comma\nand a line'  # text, not a formula
        assert rows[0]["notes"] == "'+44 call back"
        assert rows[1]["customer_name"] == "Lena Hoffmann" and rows[1]["disposition"] == "complaint"
        assert rows[0]["paused_s"] == "0.500" and rows[0]["agent_id"] == "agent02"

        status, body, _ = await qa.call("GET", "/api/recordings/export.csv?disposition=complaint")
        assert [r["recording_id"] for r in csv.DictReader(io.StringIO(body.decode(), newline=""))] == [first]
        status, body = await qa.get("/api/recordings/export.csv?limit=5")
        assert status == 422 and body["field"] == "limit"

        status, data, resp = await qa.call("GET", f"/api/recordings/{first}/download")
        assert status == 200 and resp.headers["Content-Disposition"] == f'attachment; filename="{first}.wav"'
        with wave.open(io.BytesIO(data)) as wav:
            assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        status, trail = await admin.get(f"/api/recordings/audit?recording={first}")
        assert [(e["actor"], e["action"]) for e in trail["entries"]] == [("qa1", "download")]


# --- bad input, missing and odd files -------------------------------------------------


async def test_bad_parameters_are_refused_naming_them(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, users(hub, "qa1", "admin", "agent01") as api:
        qa, admin = api["qa1"], api["admin"]
        recording_id = await add_recording(hub, agent_id="agent01")
        for path, field in (
            ("/api/recordings?from=yesterday", "from"),
            ("/api/recordings?to=2026-13-01", "to"),
            ("/api/recordings?from=2026-05-05&to=2026-05-04", "to"),
            ("/api/recordings?min_duration=-1", "min_duration"),
            ("/api/recordings?max_duration=abc", "max_duration"),
            ("/api/recordings?min_duration=10&max_duration=5", "max_duration"),
            ("/api/recordings?min_score=101", "min_score"),
            ("/api/recordings?max_score=nan", "max_score"),
            ("/api/recordings?min_score=60&max_score=50", "max_score"),
            ("/api/recordings?limit=0", "limit"),
            ("/api/recordings?limit=201", "limit"),
            ("/api/recordings?offset=-3", "offset"),
            ("/api/recordings?agnet=agent01", "agnet"),
            ("/api/recordings?customer=" + "x" * 101, "customer"),
            (f"/api/recordings/{recording_id}/peaks?n=0", "n"),
            (f"/api/recordings/{recording_id}/peaks?n=4001", "n"),
            ("/api/recordings/bad$id", "recording_id"),
            ("/api/recordings/audit?since=soon", "since"),
            ("/api/recordings/audit?limit=1001", "limit"),
            ("/api/qa/forms?all=maybe", "all"),
            ("/api/qa/forms/abc", "form_id"),
            ("/api/evaluations/abc", "evaluation_id"),
            ("/api/evaluations?agent=a%20b", "agent"),
        ):
            who = admin if "/audit" in path else qa
            status, body = await who.get(path)
            assert status == 422 and body["field"] == field, (path, body)
        status, body = await qa.get("/api/recordings?from=2026-05-04&to=2026-05-04")  # one whole day
        assert status == 200 and [r["recording_id"] for r in body["recordings"]] == [recording_id]
        status, body = await qa.get("/api/recordings?from=2026-05-04T10:00:01%2B00:00")
        assert status == 200 and body["recordings"] == []

        status, body = await qa.get("/api/recordings/rec_unknown/audio")
        assert status == 404 and body["error"] == "unknown_recording"
        status, body = await qa.get("/api/qa/forms/999")
        assert status == 404 and body["error"] == "unknown_form"
        status, body, _ = await qa.call("POST", "/api/evaluations", data=b"{not json", headers={"Content-Type": "application/json"})
        assert status == 400 and body["error"] == "bad_json"

        # A file the waveform cannot be drawn from is said to be so; it still downloads.
        odd = await add_recording(hub, agent_id="agent01", raw=b"ID3 this is not a WAV file at all" * 10)
        status, body = await qa.get(f"/api/recordings/{odd}/peaks")
        assert status == 415 and body["error"] == "not_wav"
        assert (await qa.get(f"/api/recordings/{odd}/download"))[0] == 200

        # Purged under retention: gone, and said so.
        store = hub_store(hub)
        report = await store.purge(datetime.now(UTC) + timedelta(days=366 * 8))
        assert recording_id in [p.id for p in report.purged]
        for path in (f"/api/recordings/{recording_id}/audio", f"/api/recordings/{recording_id}/peaks"):
            status, body = await qa.get(path)
            assert status == 410 and body["error"] == "recording_purged", path
        status, body = await qa.get(f"/api/recordings/{recording_id}")
        assert status == 200 and body["purged"] is True
        assert (await qa.get("/api/recordings"))[1]["recordings"] == []  # nothing left to review


async def test_the_page_is_served_with_its_assets(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, aiohttp.ClientSession() as http:
        base = http_base(hub)
        async with http.get(f"{base}/qa") as resp:
            assert resp.status == 200 and "default-src 'self'" in resp.headers["Content-Security-Policy"]
            assert "/qa/static/qa.js" in await resp.text()
        for name, kind in (("qa.js", "text/javascript"), ("qa.css", "text/css")):
            async with http.get(f"{base}/qa/static/{name}") as resp:
                assert resp.status == 200 and resp.headers["Content-Type"].startswith(kind)
        async with http.get(f"{base}/qa/static/qa_schema.py") as resp:
            assert resp.status == 404


# --- recordings kept in an S3-compatible store ---------------------------------------


@pytest.mark.sipp
async def test_a_recording_in_s3_plays_through_a_redirect_and_is_audited(
    sipp_path: str, tmp_path: Path, s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import S3_TEST_KEYS

    if not G711A_PCAP.exists():
        pytest.fail(f"{G711A_PCAP} (from sip-tester) is needed for the recording test")
    for name, value in S3_TEST_KEYS.items():
        monkeypatch.setenv(name, value)
    environ = {"CTIHUB_RECORDINGS_STORE": "s3", "CTIHUB_S3_ENDPOINT": s3_endpoint, "CTIHUB_S3_BUCKET": s3_bucket,
               "CTIHUB_RECORDING_FORMAT": "flac"}
    async with running_hub(tmp_path, sip_digest_algorithms="MD5", environ=environ) as hub, agent(hub, "agent01") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", rtp_echo=True)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_rtp.xml", service="1000", caller=LENA, hold_ms=2000)
        pop = await desk.wait_for("screen_pop")
        await desk.wait_for("call.ended", call_id=pop["call_id"], timeout=15)
        recording_id = (await desk.wait_for("recording.stored", call_id=pop["call_id"], timeout=10))["data"]["recording_id"]
        assert (await call.finish())[0] == 0
        assert (await phone.finish())[0] == 0
        store = hub_store(hub)
        for _ in range(100):  # the upload runs after the recording is stored
            if (await store.get(recording_id)).uploaded_at is not None:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the recording was not uploaded to the S3 store")

        async with users(hub, "qa1", "admin") as api:
            qa, admin = api["qa1"], api["admin"]
            status, _, resp = await qa.call("GET", f"/api/recordings/{recording_id}/audio")
            assert status == 302
            location = resp.headers["Location"]
            assert location.startswith(s3_endpoint) and "no-store" in resp.headers["Cache-Control"]
            # The presigned URL serves the bytes, Range requests included.
            async with aiohttp.ClientSession() as player:
                async with player.get(location) as whole:
                    assert whole.status == 200
                    data = await whole.read()
                async with player.get(location, headers={"Range": "bytes=100-199"}) as part:
                    assert part.status == 206 and await part.read() == data[100:200]
            assert data[:4] == b"fLaC"
            status, body = await qa.get(f"/api/recordings/{recording_id}/peaks")
            assert status == 415 and body["error"] in ("not_wav", "waveform_unavailable")
            status, trail = await admin.get(f"/api/recordings/audit?recording={recording_id}")
            assert [(e["actor"], e["action"]) for e in trail["entries"]] == [("qa1", "play")]
