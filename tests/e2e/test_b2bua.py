"""The hub as a B2BUA: it rings the chosen agent's registered phone (sipp), bridges the
two legs with the media relayed through the hub, and moves on when a phone is busy or
does not answer. Nothing leaks: calls, agent legs and RTP ports all go back to zero."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cti.app import Hub
from tests.e2e.harness import agent, running_hub, start_sipp
from tests.e2e.phones import G711A_PCAP, register_phone, start_phone

pytestmark = pytest.mark.sipp

LENA = "+4930901820"

# sipp's digest support is MD5 only: these hubs offer MD5, as a fleet of such phones needs.
PHONE_HUB = {"sip_digest_algorithms": "MD5"}


async def nothing_left(hub: Hub) -> None:
    assert hub.voice is not None and hub.media is not None
    async with asyncio.timeout(10):
        while hub.voice.active_calls or hub.voice.agent_legs_alive or hub.media.open_endpoints:
            await asyncio.sleep(0.05)
    # An answered INVITE's entry is kept for its retransmitted 200s, and goes with its leg.
    assert hub.voice.invites_tracked == 0


async def test_phone_answers_and_media_flows_both_ways(sipp_path: str, tmp_path: Path) -> None:
    if not G711A_PCAP.exists():
        pytest.fail(f"{G711A_PCAP} (from sip-tester) is needed for the media test")
    async with running_hub(tmp_path, **PHONE_HUB) as hub, agent(hub, "agent01") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", rtp_echo=True)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_rtp.xml", service="1000", caller=LENA, hold_ms=6000)
        pop = await desk.wait_for("screen_pop")
        assert pop["caller_name"] == "Lena Hoffmann"
        tapped = {"caller": 0, "agent": 0}
        assert hub.voice is not None
        assert hub.voice.add_tap(pop["call_id"], lambda side, packet: tapped.__setitem__(side, tapped[side] + 1))
        answered = await desk.wait_for("call.answered", timeout=10)  # the phone answered: no desktop accept
        assert answered["data"]["agent_id"] == "agent01"
        code, output = await call.finish()
        assert code == 0, output
        code, output = await phone.finish()
        assert code == 0, output  # the phone got the hub's BYE after the caller hung up
        await nothing_left(hub)
        assert hub.media is not None
        caller_leg, agent_leg = list(hub.media.recently_closed)[-2:]
        # The capture holds 236 packets (4.7 s); what the caller sent while still queued
        # is not relayed, the rest went to the phone, whose echo came back to the caller.
        assert caller_leg.received >= 200, caller_leg
        assert agent_leg.sent >= 150 and agent_leg.sent <= caller_leg.received, (caller_leg, agent_leg)
        assert agent_leg.received >= 0.9 * agent_leg.sent, agent_leg  # the phone's echo
        # Relayed back, none lost; the caller's leg also carried music while queued.
        assert caller_leg.sent >= agent_leg.received, (caller_leg, agent_leg)
        # The media tap (for recordings) saw both directions as they were relayed.
        assert tapped["caller"] >= agent_leg.sent and tapped["agent"] == agent_leg.received, (tapped, agent_leg)


async def test_busy_phone_sends_the_call_to_the_next_agent(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, **PHONE_HUB) as hub, agent(hub, "agent02") as first, agent(hub, "agent05") as second:
        busy = await start_phone(sipp_path, tmp_path, "phone_busy.xml")
        answering = await start_phone(sipp_path, tmp_path, "phone_answer.xml")
        await register_phone(sipp_path, hub, tmp_path, "agent02", busy)
        await register_phone(sipp_path, hub, tmp_path, "agent05", answering)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=2500)
        await first.wait_for("screen_pop")  # agent02 has been idle longest
        withdrawn = await first.wait_for("offer_withdrawn")
        assert withdrawn["reason"] == "phone_busy"
        await second.wait_for("screen_pop")
        await second.wait_for("call.answered")
        assert (await busy.finish())[0] == 0
        code, output = await call.finish()
        assert code == 0, output
        assert (await answering.finish())[0] == 0
        await nothing_left(hub)


async def test_unanswered_phone_is_cancelled_and_the_next_agent_rings(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, offer_timeout_s=2.0, **PHONE_HUB) as hub, agent(hub, "agent02") as first, agent(hub, "agent05") as second:
        silent = await start_phone(sipp_path, tmp_path, "phone_no_answer.xml")
        answering = await start_phone(sipp_path, tmp_path, "phone_answer.xml")
        await register_phone(sipp_path, hub, tmp_path, "agent02", silent)
        await register_phone(sipp_path, hub, tmp_path, "agent05", answering)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=4000)
        await first.wait_for("screen_pop")
        assert (await first.wait_for("offer_withdrawn", timeout=6))["reason"] == "timeout"
        code, output = await silent.finish()
        assert code == 0, output  # CANCEL received, 200 and 487 sent, ACK received
        await second.wait_for("call.answered", timeout=10)
        code, output = await call.finish()
        assert code == 0, output
        assert (await answering.finish())[0] == 0
        await nothing_left(hub)


async def test_caller_hangs_up_while_the_phone_rings(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, **PHONE_HUB) as hub, agent(hub, "agent01") as desk:
        ringing = await start_phone(sipp_path, tmp_path, "phone_no_answer.xml")
        await register_phone(sipp_path, hub, tmp_path, "agent01", ringing)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=1500)
        await desk.wait_for("screen_pop")
        code, output = await call.finish()
        assert code == 0, output
        code, output = await ringing.finish()
        assert code == 0, output  # the phone was CANCELled
        withdrawn = await desk.wait_for("offer_withdrawn")
        assert withdrawn["reason"] == "abandoned"
        await nothing_left(hub)


async def test_agent_hangs_up_on_the_phone(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, **PHONE_HUB) as hub, agent(hub, "agent01") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_hangs_up.xml", TALK_MS=800)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_wait_bye.xml", service="1000", caller=LENA)
        await desk.wait_for("call.answered")
        code, output = await phone.finish()
        assert code == 0, output
        code, output = await call.finish()
        assert code == 0, output  # the caller got the hub's BYE
        ended = await desk.wait_for("call.ended")
        assert ended["data"]["ended_by"] == "agent" and ended["data"]["outcome"] == "completed"
        await nothing_left(hub)


async def test_wrong_sip_password_is_refused(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, **PHONE_HUB) as hub:
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml")
        with pytest.raises(AssertionError):
            await register_phone(sipp_path, hub, tmp_path, "agent01", phone, password="wrong")
        assert await hub._phones_of("agent01") == []
        phone.process.kill()
        await phone.process.wait()


async def test_blind_transfer_to_another_queue(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, **PHONE_HUB) as hub, agent(hub, "agent02") as sales, agent(hub, "agent04") as support:
        phone = await start_phone(sipp_path, tmp_path, "phone_transfer.xml", TALK_MS=600, TRANSFER_TO="2000")
        await register_phone(sipp_path, hub, tmp_path, "agent02", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=5000)
        first = await sales.wait_for("screen_pop")
        assert first["queue"] == "sales"
        await sales.wait_for("call.answered")
        transferred = await sales.wait_for("call.transferred", timeout=5)
        assert transferred["data"]["to_queue"] == "support" and transferred["data"]["to_number"] == "2000"
        code, output = await phone.finish()
        assert code == 0, output  # REFER 202, NOTIFY 100 then 200, and the hub's BYE
        second = await support.wait_for("screen_pop")  # agent04 has no phone: the desktop
        assert second["call_id"] == first["call_id"] and second["queue"] == "support"
        assert second["customer"]["name"] == "Lena Hoffmann"
        await support.send({"type": "accept", "contact_id": second["contact_id"]})
        await support.wait_for("call.answered")
        code, output = await call.finish()
        assert code == 0, output  # the caller stayed on the line throughout
        await nothing_left(hub)
