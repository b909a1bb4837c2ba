"""Outbound calls through a SIP trunk, with real peers: one sipp plays the agent's phone,
another the carrier's gateway (the customer) on its own loopback port. Click-to-dial
rings the phone, then the customer, and bridges them; a transfer to an outside number
(from the desktop, or by REFER from the phone) hands the caller to the trunk."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from cti.app import Hub
from routing import AgentState
from tests.e2e.harness import AgentClient, agent, http_base, running_hub, start_sipp
from tests.e2e.phones import G711A_PCAP, Phone, register_phone, start_phone
from tests.e2e.test_b2bua import PHONE_HUB, nothing_left

pytestmark = pytest.mark.sipp

LENA = "+4930901820"
OLIVER = "+442079460018"
HOUSEHOLD = "+35722123456"  # Nikos and Eleni Georgiou share it


def trunk_hub(trunk: Phone | int | None) -> dict[str, Any]:
    """Hub options with the trunk at that sipp's port (None: no trunk). Overload control
    by loop lag is off: on a loaded machine it would refuse the tests' calls with 503,
    and it is tested on its own (test_sip_overload)."""
    port = trunk.port if isinstance(trunk, Phone) else trunk
    environ = {"CTIHUB_OVERLOAD_LAG_MS": "0"}
    if port is not None:
        environ["CTIHUB_SIP_TRUNK"] = f"127.0.0.1:{port}"
    return {**PHONE_HUB, "environ": environ}


def notify_frags(message_log: str) -> list[str]:
    """The sipfrag status lines of the NOTIFYs a sipp phone received, in order."""
    frags = []
    for chunk in message_log.split("\n\n----"):
        lines = [line.strip() for line in chunk.splitlines()]
        if any(line.startswith("NOTIFY sip:") for line in lines):
            frags += [line for line in lines if re.match(r"SIP/2\.0 \d{3} ", line)]
    return frags


async def dial(hub: Hub, desk: AgentClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {desk.token}"}
    async with aiohttp.ClientSession() as session, session.post(
        f"{http_base(hub)}/api/calls/dial", json=body, headers=headers
    ) as resp:
        return resp.status, await resp.json()


async def interaction_of(hub: Hub, call_id: str, **expected: Any) -> dict[str, Any]:
    """The call's interaction once written with the expected fields (the write follows the BYE)."""
    assert hub.center is not None
    async with asyncio.timeout(10):
        while True:
            rows = await hub.center.crm.list_interactions(call_id=call_id)
            if rows and all(rows[0].get(k) == v for k, v in expected.items()):
                return rows[0]
            await asyncio.sleep(0.05)


async def test_click_to_dial_rings_the_agent_then_bridges_the_customer(sipp_path: str, tmp_path: Path) -> None:
    if not G711A_PCAP.exists():
        pytest.fail(f"{G711A_PCAP} (from sip-tester) is needed for the media test")
    customer = await start_phone(sipp_path, tmp_path, "phone_answer.xml", rtp_echo=True, RING_MS=300)
    async with running_hub(tmp_path, **trunk_hub(customer)) as hub, agent(hub, "agent01") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_dial_talks.xml", TALK_MS=3000)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)

        status, placed = await dial(hub, desk, {"customer_id": "cus_demo_lena"})
        assert status == 201, placed
        assert (placed["number"], placed["name"]) == (LENA, "Lena Hoffmann")
        busy = await desk.wait_for("agent.state_changed", state="busy")
        assert busy["data"]["previous"] == "available"
        assert hub.center is not None and hub.center.router.agent_state("agent01") == AgentState.BUSY
        await desk.wait_for("dial_progress", stage="ringing", call_id=placed["call_id"])
        await desk.wait_for("call.answered", call_id=placed["call_id"])

        await asyncio.sleep(1.0)  # the phone's audio goes to the customer, whose echo comes back
        assert hub.voice is not None
        counts = hub.voice.dials.packets_received(placed["call_id"])
        assert counts is not None and counts[0] > 10 and counts[1] > 10, counts

        await desk.send({"type": "hold", "contact_id": placed["contact_id"]})
        await desk.wait_for("ok", request="hold")
        await desk.wait_for("call.held", call_id=placed["call_id"])
        await desk.send({"type": "unhold", "contact_id": placed["contact_id"]})
        await desk.wait_for("call.resumed", call_id=placed["call_id"])

        ended = await desk.wait_for("call.ended", call_id=placed["call_id"], timeout=10)
        assert ended["data"]["ended_by"] == "agent"
        for peer in (phone, customer):
            code, output = await peer.finish()
            assert code == 0, output  # the agent hung up; the hub's BYE ended the customer's leg
        row = await interaction_of(hub, placed["call_id"], outcome="completed")
        assert (row["direction"], row["customer_id"], row["agent_id"]) == ("outbound", "cus_demo_lena", "agent01")
        assert row["caller_number"] == LENA and row["answered_at"] is not None

        await desk.send({"type": "wrap_up", "interaction_id": placed["interaction_id"], "disposition": "trade_query"})
        await desk.wait_for("ok", request="wrap_up")
        await interaction_of(hub, placed["call_id"], disposition="trade_query")
        await desk.wait_for("agent.state_changed", state="available")
        await nothing_left(hub)


async def test_click_to_dial_to_a_busy_customer_tells_the_agent_and_ends_both_legs(sipp_path: str, tmp_path: Path) -> None:
    customer = await start_phone(sipp_path, tmp_path, "phone_busy.xml")
    async with running_hub(tmp_path, **trunk_hub(customer)) as hub, agent(hub, "agent01") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", RING_MS=100)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        status, placed = await dial(hub, desk, {"customer_id": "cus_demo_oliver", "phone": "020 7946 0018"})
        assert status == 201, placed
        failed = await desk.wait_for("dial_progress", stage="failed", timeout=10)
        assert (failed["side"], failed["failure"], failed["status"]) == ("customer", "busy", 486)
        await desk.wait_for("call.ended", call_id=placed["call_id"])
        for peer in (phone, customer):
            code, output = await peer.finish()
            assert code == 0, output  # the phone got the hub's BYE; the trunk its ACK
        row = await interaction_of(hub, placed["call_id"], outcome="failed")
        assert (row["direction"], row["customer_id"], row["disposition"]) == ("outbound", "cus_demo_oliver", "customer_busy")
        await nothing_left(hub)


async def test_the_customer_hangs_up_a_click_to_dial_call(sipp_path: str, tmp_path: Path) -> None:
    customer = await start_phone(sipp_path, tmp_path, "phone_hangs_up.xml", TALK_MS=800)
    async with running_hub(tmp_path, **trunk_hub(customer)) as hub, agent(hub, "agent03") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", RING_MS=100)
        await register_phone(sipp_path, hub, tmp_path, "agent03", phone)
        status, placed = await dial(hub, desk, {"customer_id": "cus_demo_lena"})
        assert status == 201, placed
        await desk.wait_for("call.answered", call_id=placed["call_id"])
        ended = await desk.wait_for("call.ended", call_id=placed["call_id"])
        assert ended["data"]["ended_by"] == "customer"
        for peer in (customer, phone):
            code, output = await peer.finish()
            assert code == 0, output  # the customer's BYE was answered; the phone got the hub's
        await interaction_of(hub, placed["call_id"], outcome="completed", agent_id="agent03")
        await nothing_left(hub)


async def test_a_silent_click_to_dial_call_is_hung_up_by_the_rtp_watchdog(sipp_path: str, tmp_path: Path) -> None:
    customer = await start_phone(sipp_path, tmp_path, "phone_answer.xml", RING_MS=100)  # sends no RTP
    async with running_hub(tmp_path, rtp_timeout_s=1.0, **trunk_hub(customer)) as hub, agent(hub, "agent01") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", RING_MS=100)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        status, placed = await dial(hub, desk, {"customer_id": "cus_demo_lena"})
        assert status == 201, placed
        await desk.wait_for("call.answered", call_id=placed["call_id"])
        ended = await desk.wait_for("call.ended", call_id=placed["call_id"], timeout=5)
        assert ended["data"]["ended_by"] == "hub"
        for peer in (customer, phone):
            code, output = await peer.finish()
            assert code == 0, output  # both legs got the hub's BYE
        await nothing_left(hub)


async def test_click_to_dial_refusals_name_the_setting_or_the_field(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, **trunk_hub(None)) as hub, agent(hub, "agent01") as desk:
        hello = next(m for m in desk.received if m["type"] == "hello")
        assert hello["outbound"] is False  # the desktop offers no Call button
        status, body = await dial(hub, desk, {"customer_id": "cus_demo_lena"})
        assert (status, body["error"]) == (409, "no_trunk")
        assert "CTIHUB_SIP_TRUNK" in body["detail"]
    # Nothing listens on port 5: every request below is refused before any INVITE.
    async with running_hub(tmp_path, **trunk_hub(5)) as hub, \
            agent(hub, "agent01") as desk, agent(hub, "agent02", available=False) as away:
        assert next(m for m in desk.received if m["type"] == "hello")["outbound"] is True
        status, body = await dial(hub, desk, {"customer_id": "cus_demo_lena", "phone": "not a number"})
        assert (status, body["error"], body["field"]) == (422, "bad_field", "phone")
        status, body = await dial(hub, desk, {"customer_id": "cus_demo_lena", "phone": OLIVER})
        assert (status, body["field"]) == (422, "phone")  # only the customer's own numbers
        status, body = await dial(hub, desk, {"phone": LENA})
        assert (status, body["field"]) == (422, "customer_id")
        status, body = await dial(hub, desk, {"customer_id": "cus_nobody"})
        assert (status, body["error"], body["field"]) == (404, "unknown_customer", "customer_id")
        status, body = await dial(hub, desk, {"customer_id": "cus_demo_lena"})
        assert (status, body["error"]) == (409, "no_phone")
        assert hub.center is not None and hub.center.router.agent_state("agent01") == AgentState.AVAILABLE
        await away.send({"type": "set_state", "state": "offline"})
        await away.wait_for("agent.logged_out")
        status, body = await dial(hub, away, {"customer_id": "cus_demo_lena"})
        assert (status, body["error"]) == (409, "not_logged_in")


async def test_transfer_from_the_desktop_to_an_outside_number(sipp_path: str, tmp_path: Path) -> None:
    if not G711A_PCAP.exists():
        pytest.fail(f"{G711A_PCAP} (from sip-tester) is needed for the media test")
    customer = await start_phone(sipp_path, tmp_path, "phone_answer.xml", rtp_echo=True, RING_MS=300)
    async with running_hub(tmp_path, **trunk_hub(customer)) as hub, agent(hub, "agent02") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", RING_MS=100)
        await register_phone(sipp_path, hub, tmp_path, "agent02", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_rtp.xml", service="1000", caller=LENA, hold_ms=3000)
        pop = await desk.wait_for("screen_pop")
        relayed = {"caller": 0, "agent": 0}
        assert hub.voice is not None
        hub.voice.add_tap(pop["call_id"], lambda side, _: relayed.__setitem__(side, relayed[side] + 1))
        await desk.wait_for("call.answered")

        await desk.send({"type": "transfer", "contact_id": pop["contact_id"], "number": "no number"})
        bad = await desk.wait_for("error", request="transfer")
        assert (bad["error"], bad["field"]) == ("bad_field", "number")
        await desk.send({"type": "transfer", "contact_id": pop["contact_id"], "number": "020 7946 0018"})
        ok = await desk.wait_for("ok", request="transfer")
        assert ok["number"] == OLIVER
        transferred = await desk.wait_for("call.transferred", timeout=5)
        assert (transferred["data"]["to_number"], transferred["data"]["to_queue"]) == (OLIVER, "")
        code, output = await phone.finish()
        assert code == 0, output  # the agent's leg got the hub's BYE once the number answered
        assert hub.voice.agent_legs_alive == 1  # the trunk's leg, bridged to the caller
        before = relayed["agent"]
        await asyncio.sleep(0.6)
        assert relayed["agent"] - before > 10, "the caller's audio reaches the number, whose echo comes back"
        code, output = await call.finish()
        assert code == 0, output  # the caller stayed on the line throughout, then hung up
        code, output = await customer.finish()
        assert code == 0, output  # and the hub's BYE reached the outside number
        row = await interaction_of(hub, pop["call_id"], disposition=f"transferred to {OLIVER}")
        assert (row["agent_id"], row["outcome"], row["customer_id"]) == ("agent02", "completed", "cus_demo_lena")
        await nothing_left(hub)


async def test_refer_from_the_phone_to_an_outside_number_notifies_the_outcome(sipp_path: str, tmp_path: Path) -> None:
    customer = await start_phone(sipp_path, tmp_path, "phone_answer.xml", RING_MS=200)
    async with running_hub(tmp_path, **trunk_hub(customer)) as hub, agent(hub, "agent02") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_transfer.xml", TRANSFER_TO=OLIVER, TALK_MS=300)
        await register_phone(sipp_path, hub, tmp_path, "agent02", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=3000)
        await desk.wait_for("screen_pop")
        transferred = await desk.wait_for("call.transferred", timeout=8)
        assert transferred["data"]["to_number"] == OLIVER
        code, output = await phone.finish()
        assert code == 0, output
        for peer in (call, customer):
            code, output = await peer.finish()
            assert code == 0, output
        frags = notify_frags((tmp_path / f"phone_{phone.port}_messages.log").read_text())
        assert frags == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
        await nothing_left(hub)


async def test_refer_to_a_busy_number_notifies_486_and_keeps_the_agent_on_the_call(sipp_path: str, tmp_path: Path) -> None:
    customer = await start_phone(sipp_path, tmp_path, "phone_busy.xml")
    async with running_hub(tmp_path, **trunk_hub(customer)) as hub, agent(hub, "agent02") as desk:
        phone = await start_phone(sipp_path, tmp_path, "phone_transfer.xml", TRANSFER_TO=OLIVER, TALK_MS=300)
        await register_phone(sipp_path, hub, tmp_path, "agent02", phone)
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=2500)
        pop = await desk.wait_for("screen_pop")
        failed = await desk.wait_for("transfer_failed", timeout=8)
        assert (failed["failure"], failed["status"], failed["number"]) == ("busy", 486, OLIVER)
        assert hub.center is not None and hub.center.router.agent_state("agent02") == AgentState.BUSY
        for peer in (call, phone, customer):
            code, output = await peer.finish()
            assert code == 0, output  # the caller hung up; the hub's BYE ended the agent's leg
        frags = notify_frags((tmp_path / f"phone_{phone.port}_messages.log").read_text())
        assert frags == ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"]
        row = await interaction_of(hub, pop["call_id"], outcome="completed")
        assert row["agent_id"] == "agent02" and row["disposition"] is None  # no transfer happened
        await nothing_left(hub)


async def test_the_customer_picked_among_several_is_stored_on_the_interaction(
    sipp_path: str, database_url: str, tmp_path: Path
) -> None:
    async with running_hub(tmp_path, database_url=database_url, **trunk_hub(None)) as hub, agent(hub, "agent01") as desk:
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=HOUSEHOLD, hold_ms=4000)
        pop = await desk.wait_for("screen_pop")
        offered = {m["customer_id"] for m in pop["matches"]}
        assert offered == {"cus_demo_nikos", "cus_demo_eleni"}
        await desk.send({"type": "pick_customer", "contact_id": pop["contact_id"], "customer_id": "cus_demo_lena"})
        refused = await desk.wait_for("error", request="pick_customer")
        assert (refused["error"], refused["field"]) == ("bad_field", "customer_id")
        await desk.send({"type": "pick_customer", "contact_id": pop["contact_id"], "customer_id": "cus_demo_eleni"})
        picked = await desk.wait_for("ok", request="pick_customer")
        assert (picked["customer_id"], picked["stored"]) == ("cus_demo_eleni", False)
        await desk.send({"type": "accept", "contact_id": pop["contact_id"]})
        await desk.wait_for("call.answered")
        await desk.send({"type": "transfer", "contact_id": pop["contact_id"], "number": OLIVER})
        no_trunk = await desk.wait_for("error", request="transfer")
        assert no_trunk["error"] == "no_trunk" and "CTIHUB_SIP_TRUNK" in no_trunk["detail"]
        await desk.wait_for("call.ended", timeout=10)
        code, output = await call.finish()
        assert code == 0, output
        await interaction_of(hub, pop["call_id"], customer_id="cus_demo_eleni")

        # Picked again once written (the agent corrects themselves): the row is updated.
        await desk.send({"type": "pick_customer", "interaction_id": pop["interaction_id"], "customer_id": "cus_demo_nikos"})
        again = await desk.wait_for("ok", request="pick_customer")
        assert again["stored"] is True
        await interaction_of(hub, pop["call_id"], customer_id="cus_demo_nikos")
        assert hub.center is not None
        history = await hub.center.crm.get_profile("cus_demo_nikos")
        assert history is not None and pop["interaction_id"] in {i.id for i in history.recent_interactions}


async def test_click_to_dial_with_routing_shared_through_redis(
    sipp_path: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    customer = await start_phone(sipp_path, tmp_path, "phone_busy.xml")
    namespace = f"test-outbound-{uuid.uuid4().hex[:10]}"
    options = trunk_hub(customer)
    options["environ"]["CTIHUB_ROUTING_STORE"] = "redis"
    try:
        async with running_hub(tmp_path, database_url=database_url, redis_url=redis_url, routing_namespace=namespace,
                               **options) as hub, agent(hub, "agent01") as desk:
            assert hub.center is not None and hub.center.shared
            phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", RING_MS=100)
            await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
            status, placed = await dial(hub, desk, {"customer_id": "cus_demo_lena"})
            assert status == 201, placed
            await desk.wait_for("agent.state_changed", state="busy")  # applied through the shared log
            status, again = await dial(hub, desk, {"customer_id": "cus_demo_oliver"})
            assert (status, again["error"]) == (409, "agent_busy")
            await desk.wait_for("dial_progress", stage="failed", failure="busy")
            await desk.wait_for("call.ended", call_id=placed["call_id"])
            await desk.wait_for("agent.state_changed", state="available")
            for peer in (phone, customer):
                code, output = await peer.finish()
                assert code == 0, output
            await nothing_left(hub)
    finally:
        client = aioredis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"{{{namespace}}}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
