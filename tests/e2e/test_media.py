"""Media at the hub: music while queued, the caller's keypresses as ordered events,
hold and resume from the agent's phone, and a leg whose RTP stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.harness import agent, running_hub, start_sipp
from tests.e2e.phones import register_phone, start_phone
from tests.fixtures.rtp import require_captures

pytestmark = pytest.mark.sipp

LENA = "+4930901820"


async def test_a_queued_caller_hears_music(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=2000)
        code, output = await call.finish()
        assert code == 0, output
        assert hub.media is not None
        async with asyncio.timeout(5):
            while not hub.media.recently_closed:
                await asyncio.sleep(0.05)
        (caller_leg,) = hub.media.recently_closed
        # Two seconds in the queue at one packet per 20 ms (some slack for a busy machine).
        assert 70 <= caller_leg.sent <= 110, caller_leg


async def test_keypresses_arrive_once_each_and_in_order(sipp_path: str, tmp_path: Path) -> None:
    require_captures()
    async with running_hub(tmp_path) as hub:
        assert hub.bus is not None
        async with hub.bus.subscribe(["call.dtmf_received"]) as events:
            call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_dtmf.xml", service="1000", caller=LENA, hold_ms=300)
            code, output = await call.finish()
            assert code == 0, output
            digits = []
            async with asyncio.timeout(5):
                while len(digits) < 3:
                    digits.append(await events.get(timeout=5))
        assert [d.digit for d in digits] == ["1", "9", "#"]  # type: ignore[attr-defined]
        assert all(d.duration_ms == 280 for d in digits)  # type: ignore[attr-defined]


async def test_agent_holds_and_resumes_from_the_phone(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, sip_digest_algorithms="MD5") as hub, agent(hub, "agent01") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_hold.xml", TALK_MS=700)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=4000)
        await desk.wait_for("call.answered")
        held = await desk.wait_for("call.held", timeout=5)
        resumed = await desk.wait_for("call.resumed", timeout=5)
        assert held["data"]["agent_id"] == resumed["data"]["agent_id"] == "agent01"
        code, output = await call.finish()
        assert code == 0, output
        code, output = await phone.finish()
        assert code == 0, output  # both re-INVITEs answered 200 and ACKed; BYE at the end
        # What the phone received: the answer to its sendonly offer is recvonly (RFC 3264 §6.1).
        trace = (tmp_path / f"phone_{phone.port}_messages.log").read_text()
        received = [block for block in trace.split("-----------") if "message received" in block and "SIP/2.0 200 OK" in block]
        directions = [line.strip() for block in received for line in block.splitlines() if line.strip() in ("a=recvonly", "a=sendrecv")]
        assert directions[-2:] == ["a=recvonly", "a=sendrecv"], directions


async def test_a_silent_leg_is_hung_up(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, rtp_timeout_s=1.5) as hub:
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_wait_bye.xml", service="1000", caller=LENA, wait_ms=10000)
        code, output = await call.finish()
        assert code == 0, output  # the caller sent no RTP: the hub hung up with BYE
        assert hub.voice is not None and hub.voice.active_calls == 0
