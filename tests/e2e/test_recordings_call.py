"""A real call through the hub recorded from its media tap: sipp plays G.711 A-law
speech as the caller, a sipp phone echoes it back as the agent. The file has the
caller on the left and the echo on the right, a PCI pause is silent, and the stored
recording verifies."""

from __future__ import annotations

import asyncio
import wave
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cti.db import make_sessionmaker
from recordings.recorder import CallRecorder
from recordings.storage import FileStorage, new_recording_id
from recordings.store import RecordingStore
from tests.e2e.harness import agent, running_hub, start_sipp
from tests.e2e.phones import G711A_PCAP, register_phone, start_phone
from tests.unit.test_recordings_assembler import channels, rms

pytestmark = pytest.mark.sipp

LENA = "+4930901820"


async def test_a_bridged_call_is_recorded_paused_and_verified(sipp_path: str, tmp_path: Path) -> None:
    if not G711A_PCAP.exists():
        pytest.fail(f"{G711A_PCAP} (from sip-tester) is needed for the recording test")
    storage = FileStorage(tmp_path / "recordings")
    recording_id = new_recording_id()
    async with running_hub(tmp_path, sip_digest_algorithms="MD5") as hub, agent(hub, "agent01") as desk:
        assert hub.voice is not None and hub.engine is not None
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", rtp_echo=True)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_rtp.xml", service="1000", caller=LENA, hold_ms=6000)
        pop = await desk.wait_for("screen_pop")
        call_id = pop["call_id"]
        recorder = CallRecorder(storage.new_path(recording_id, datetime.now(timezone.utc)))
        await desk.wait_for("call.answered", timeout=10)
        loop = asyncio.get_running_loop()
        assert hub.voice.add_tap(call_id, recorder.tap)
        started = loop.time()
        await recorder.start()
        await asyncio.sleep(1.5)
        assert recorder.pause()
        pause_s = loop.time() - started
        await asyncio.sleep(1.0)
        assert recorder.resume()
        await desk.wait_for("call.ended", call_id=call_id, timeout=15)
        hub.voice.remove_tap(call_id, recorder.tap)
        result = await recorder.stop()
        recorded_s = loop.time() - started
        code, output = await call.finish()
        assert code == 0, output
        assert (await phone.finish())[0] == 0

        assert abs(result.duration_s - recorded_s) < 0.2
        with wave.open(str(result.path), "rb") as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
            left, right = channels(wav.readframes(wav.getnframes()))
        assert result.stats.packets > 100
        # Speech on both sides before the pause: the caller's, and the phone's echo of it.
        assert rms(left[800:8000]) > 100 and rms(right[800:8000]) > 100
        [paused] = result.paused_intervals
        assert paused.start_s == pytest.approx(pause_s, abs=0.05)
        assert paused.end_s - paused.start_s == pytest.approx(1.0, abs=0.1)
        assert rms(left[paused.start : paused.end]) == 0 and rms(right[paused.start : paused.end]) == 0

        store = RecordingStore(make_sessionmaker(hub.engine), storage)
        info = await store.add(recording_id, result, call_id=call_id, queue="sales", agent_id="agent01")
        assert info.paused_intervals == ((paused.as_ms()[0] / 1000, paused.as_ms()[1] / 1000),)
        report = await store.verify()
        assert report.ok, report.problems
