"""Real calls through the hub, recorded by the hub itself as each queue's policy says.

sipp plays G.711 A-law speech as the caller; a sipp phone answers as the agent and
echoes it back. Sales (1000) records every call and announces it; support (2000)
records only when the agent asks. The files have the caller on the left and the echo
on the right, a PCI pause is silent, and the stored recording is linked to the call's
interaction and verifies.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from cti.db import make_sessionmaker
from recordings.storage import FileStorage
from recordings.store import RecordingStore
from tests.e2e.harness import agent, running_hub, start_sipp, write_tone
from tests.e2e.phones import G711A_PCAP, register_phone, start_phone
from tests.unit.test_recordings_assembler import channels, rms

pytestmark = pytest.mark.sipp

LENA = "+4930901820"
NOTICE_S = 1.0


def _store(hub: object) -> RecordingStore:
    engine = hub.engine  # type: ignore[attr-defined]
    settings = hub.settings  # type: ignore[attr-defined]
    return RecordingStore(make_sessionmaker(engine), FileStorage(settings.effective_recordings_dir))


async def test_a_sales_call_is_announced_recorded_paused_and_linked(sipp_path: str, tmp_path: Path) -> None:
    if not G711A_PCAP.exists():
        pytest.fail(f"{G711A_PCAP} (from sip-tester) is needed for the recording test")
    notice = write_tone(tmp_path / "notice-1s.wav", NOTICE_S)
    async with running_hub(tmp_path, sip_digest_algorithms="MD5", recording_notice=str(notice)) as hub, \
            agent(hub, "agent01") as desk:
        assert hub.voice is not None and hub.center is not None
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", rtp_echo=True)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        loop = asyncio.get_running_loop()
        dialled_at = loop.time()
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_rtp.xml", service="1000", caller=LENA, hold_ms=6000)
        pop = await desk.wait_for("screen_pop")
        call_id, contact_id = pop["call_id"], pop["contact_id"]
        await desk.wait_for("call.answered", timeout=10)
        bridged_at = loop.time()
        # The agent's phone rang only after the whole notice played to the caller.
        assert bridged_at - dialled_at >= 0.2 + NOTICE_S
        started = (await desk.wait_for("recording.started", call_id=call_id))["data"]
        assert started["started_by"] == "policy" and started["queue"] == "sales"

        await asyncio.sleep(1.5)
        # The PCI pause from the desktop, over the agent websocket.
        await desk.send({"type": "recording_pause", "contact_id": contact_id})
        status = await desk.wait_for("recording_status", request="recording_pause")
        paused_at = loop.time() - bridged_at
        assert status["paused"] is True and status["may_stop"] is False
        await asyncio.sleep(1.0)
        await desk.send({"type": "recording_resume", "contact_id": contact_id})
        assert (await desk.wait_for("recording_status", request="recording_resume"))["paused"] is False
        await desk.wait_for("recording.paused", call_id=call_id)
        await desk.wait_for("recording.resumed", call_id=call_id)
        # Under "always" the agent may pause but never stop the recording.
        await desk.send({"type": "recording_stop", "contact_id": contact_id})
        refused = await desk.wait_for("error", request="recording_stop")
        assert refused["error"] == "not_allowed" and "pause it instead" in refused["detail"]

        await desk.wait_for("call.ended", call_id=call_id, timeout=15)
        ended_at = loop.time()
        stored = (await desk.wait_for("recording.stored", call_id=call_id, timeout=10))["data"]
        recorded = (await desk.wait_for("interaction.recorded", timeout=10))["data"]
        code, output = await call.finish()
        assert code == 0, output
        assert (await phone.finish())[0] == 0

        store = _store(hub)
        info = await store.get(stored["recording_id"])
        assert info.interaction_id == recorded["interaction_id"] == stored["interaction_id"]
        assert info.queue == "sales" and info.agent_id == "agent01"
        assert abs(info.duration_s - (ended_at - bridged_at)) < 0.2
        with wave.open(str(store.storage.resolve(info.path)), "rb") as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
            left, right = channels(wav.readframes(wav.getnframes()))
        # Speech on both sides before the pause: the caller's, and the phone's echo of it.
        assert rms(left[800:8000]) > 100 and rms(right[800:8000]) > 100
        [(pause_start, pause_end)] = info.paused_intervals
        assert pause_start == pytest.approx(paused_at, abs=0.1)
        assert pause_end - pause_start == pytest.approx(1.0, abs=0.15)
        silent = slice(round(pause_start * 8000) + 80, round(pause_end * 8000) - 80)
        assert rms(left[silent]) == 0 and rms(right[silent]) == 0
        report = await store.verify()
        assert report.ok, report.problems


async def test_a_support_call_is_recorded_only_when_the_agent_asks(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, sip_digest_algorithms="MD5") as hub, agent(hub, "agent04") as desk:
        assert hub.center is not None
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", rtp_echo=True)
        await register_phone(sipp_path, hub, tmp_path, "agent04", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_rtp.xml", service="2000", caller=LENA, hold_ms=5000)
        pop = await desk.wait_for("screen_pop")
        call_id, contact_id = pop["call_id"], pop["contact_id"]
        await desk.wait_for("call.answered", timeout=10)
        await asyncio.sleep(1.0)
        assert hub.recordings is not None and hub.recordings.active(call_id) is None
        await desk.send({"type": "recording_start", "contact_id": contact_id})
        status = await desk.wait_for("recording_status", request="recording_start")
        assert status["recording"] is True and status["may_stop"] is True
        started = (await desk.wait_for("recording.started", call_id=call_id))["data"]
        assert started["started_by"] == "agent04"
        await asyncio.sleep(1.5)
        await desk.send({"type": "recording_stop", "contact_id": contact_id})
        await desk.wait_for("recording_status", request="recording_stop")
        stored = (await desk.wait_for("recording.stored", call_id=call_id, timeout=10))["data"]
        assert 1.3 < stored["duration_ms"] / 1000 < 1.8
        # Another agent cannot touch this call's recording.
        with pytest.raises(Exception, match="not connected to you"):
            hub.center.recording("agent01", contact_id, "start")
        await desk.wait_for("call.ended", call_id=call_id, timeout=15)
        assert (await call.finish())[0] == 0
        assert (await phone.finish())[0] == 0
        assert len(await _store(hub).for_call(call_id)) == 1
