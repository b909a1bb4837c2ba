"""Hold, resume and blind transfer from the agent desktop act on the real SIP call: the
hub stops relaying the agent's audio and plays music to the caller while held; a
transfer releases the agent's phone (BYE) and queues the caller again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.harness import agent, running_hub, start_sipp
from tests.e2e.phones import G711A_PCAP, register_phone, start_phone
from tests.e2e.test_b2bua import PHONE_HUB, nothing_left

pytestmark = pytest.mark.sipp

LENA = "+4930901820"


async def counted_for(seconds: float, counts: dict[str, int], side: str) -> int:
    before = counts[side]
    await asyncio.sleep(seconds)
    return counts[side] - before


async def test_hold_stops_the_relay_and_resume_restores_it(sipp_path: str, tmp_path: Path) -> None:
    if not G711A_PCAP.exists():
        pytest.fail(f"{G711A_PCAP} (from sip-tester) is needed for the media test")
    async with running_hub(tmp_path, **PHONE_HUB) as hub, agent(hub, "agent01") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", rtp_echo=True)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_rtp.xml", service="1000", caller=LENA, hold_ms=6000)
        pop = await desk.wait_for("screen_pop")
        relayed = {"caller": 0, "agent": 0}
        assert hub.voice is not None
        hub.voice.add_tap(pop["call_id"], lambda side, _: relayed.__setitem__(side, relayed[side] + 1))
        await desk.wait_for("call.answered", timeout=10)
        assert await counted_for(0.6, relayed, "agent") > 10, "the phone's echo is relayed while talking"

        await desk.send({"type": "hold", "contact_id": pop["contact_id"]})
        await desk.wait_for("ok", request="hold")
        held = await desk.wait_for("call.held", call_id=pop["call_id"])
        assert held["data"]["agent_id"] == "agent01"
        await asyncio.sleep(0.2)  # what was already in flight
        assert await counted_for(0.8, relayed, "agent") == 0, "nothing from the agent's side reaches the caller on hold"
        await desk.send({"type": "hold", "contact_id": pop["contact_id"]})
        error = await desk.wait_for("error", request="hold")
        assert error["error"] == "bad_state"

        await desk.send({"type": "unhold", "contact_id": pop["contact_id"]})
        await desk.wait_for("ok", request="unhold")
        await desk.wait_for("call.resumed", call_id=pop["call_id"])
        assert await counted_for(0.6, relayed, "agent") > 10, "the relay runs again after resume"
        code, output = await call.finish()
        assert code == 0, output
        code, output = await phone.finish()
        assert code == 0, output
        await nothing_left(hub)


async def test_transfer_from_the_desktop_requeues_the_caller(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, **PHONE_HUB) as hub, agent(hub, "agent02") as sales, agent(hub, "agent04") as support:
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml")
        await register_phone(sipp_path, hub, tmp_path, "agent02", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=5000)
        hello = next(m for m in sales.received if m["type"] == "hello")
        assert {"sales", "support"} <= set(hello["transfer_queues"])
        first = await sales.wait_for("screen_pop")
        await sales.wait_for("call.answered")

        await sales.send({"type": "transfer", "contact_id": first["contact_id"]})
        missing = await sales.wait_for("error", request="transfer")
        assert missing["field"] == "queue"
        await sales.send({"type": "transfer", "contact_id": first["contact_id"], "queue": "nowhere"})
        unknown = await sales.wait_for("error", request="transfer")
        assert (unknown["error"], unknown["field"]) == ("unknown_queue", "queue")
        await support.send({"type": "transfer", "contact_id": first["contact_id"], "queue": "support"})
        stranger = await support.wait_for("error", request="transfer")
        assert stranger["error"] == "not_your_contact"

        await sales.send({"type": "transfer", "contact_id": first["contact_id"], "queue": "support"})
        await sales.wait_for("ok", request="transfer")
        transferred = await sales.wait_for("call.transferred", timeout=5)
        assert transferred["data"]["to_queue"] == "support"
        code, output = await phone.finish()
        assert code == 0, output  # the hub's BYE ended the agent's phone leg
        second = await support.wait_for("screen_pop")
        assert second["call_id"] == first["call_id"] and second["queue"] == "support"
        await support.send({"type": "accept", "contact_id": second["contact_id"]})
        await support.wait_for("call.answered")
        code, output = await call.finish()
        assert code == 0, output  # the caller stayed on the line throughout
        await nothing_left(hub)
