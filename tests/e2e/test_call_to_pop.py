"""A real SIP call from sipp reaches a logged-in agent's websocket as a screen pop, and
ends as an interaction in the CRM store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from crm_sync.schema import Interaction
from cti.app import Hub
from cti.db import make_sessionmaker
from tests.e2e.harness import agent, running_hub, start_sipp

pytestmark = pytest.mark.sipp

LENA = "+4930901820"  # demo customer: Lena Hoffmann, verified VIP
OLIVER = "+442079460018"  # demo customer: Oliver Bennett, pending KYC with EDD flags


async def interactions_of_call(hub: Hub, call_id: str) -> list[Interaction]:
    assert hub.engine is not None
    async with make_sessionmaker(hub.engine)() as session:
        rows = await session.execute(select(Interaction).where(Interaction.call_id == call_id))
        return list(rows.scalars())


async def wait_interaction(hub: Hub, call_id: str, timeout: float = 10.0) -> Interaction:
    async with asyncio.timeout(timeout):
        while not (rows := await interactions_of_call(hub, call_id)):
            await asyncio.sleep(0.05)
    assert len(rows) == 1, rows
    return rows[0]


async def test_known_caller_pops_on_the_agent_and_is_stored(sipp_path: str, database_url: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, database_url=database_url) as hub, agent(hub, "agent01") as desk:
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller="00" + LENA[1:], hold_ms=3000)
        pop = await desk.wait_for("screen_pop")
        assert pop["caller_e164"] == LENA
        assert pop["dialled"] == "1000" and pop["queue"] == "sales"
        assert pop["known_caller"] is True
        customer = pop["customer"]
        assert customer["name"] == "Lena Hoffmann"
        assert customer["tier"] == "vip" and customer["language"] == "de"
        assert customer["kyc"]["status"] == "verified"
        assert 1 <= len(customer["recent_interactions"]) <= 5
        assert all("number" not in account for account in customer["accounts"]), "full account numbers leak"
        await desk.send({"type": "accept", "contact_id": pop["contact_id"]})
        await desk.wait_for("ok", request="accept")
        await desk.wait_for("call.answered", call_id=pop["call_id"])
        code, output = await call.finish()
        assert code == 0, output
        await desk.wait_for("call.ended", call_id=pop["call_id"], outcome="completed", ended_by="caller")
        row = await wait_interaction(hub, pop["call_id"])
        assert row.customer_id == "cus_demo_lena"
        assert row.agent_id == "agent01" and row.queue == "sales"
        assert row.outcome == "completed"
        assert row.started_at <= row.answered_at <= row.ended_at  # type: ignore[operator]
        state = await desk.wait_for("agent.state_changed", state="available")
        assert state["data"]["previous"] == "busy"


async def test_pop_shows_kyc_and_edd_flags(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, agent(hub, "agent07") as desk:  # KYC team
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="3000", caller=OLIVER, hold_ms=500)
        pop = await desk.wait_for("screen_pop")
        kyc = pop["customer"]["kyc"]
        assert pop["customer"]["name"] == "Oliver Bennett"
        assert kyc["status"] == "pending"
        assert kyc["edd"]["required"] is True
        assert "unusual_transactions" in kyc["edd"]["reasons"]
        assert kyc["risk_rating"] == "high"
        code, output = await call.finish()
        assert code == 0, output


async def test_unknown_caller_and_agent_hangs_up(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, agent(hub, "agent04") as desk:  # support
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_wait_bye.xml", service="2000", caller="+14155550123")
        pop = await desk.wait_for("screen_pop")
        assert pop["known_caller"] is False and pop["customer"] is None
        assert pop["caller_name"] == "unknown caller"
        assert pop["caller_e164"] == "+14155550123"
        await desk.send({"type": "accept", "contact_id": pop["contact_id"]})
        await desk.wait_for("call.answered")
        await desk.send({"type": "hangup", "contact_id": pop["contact_id"]})
        code, output = await call.finish()
        assert code == 0, output  # sipp received the hub's BYE and answered it
        ended = await desk.wait_for("call.ended", call_id=pop["call_id"])
        assert ended["data"]["ended_by"] == "agent" and ended["data"]["outcome"] == "completed"
        row = await wait_interaction(hub, pop["call_id"])
        assert row.customer_id is None and row.caller_number == "+14155550123"
        assert row.outcome == "completed" and row.agent_id == "agent04"


async def test_shared_number_lists_every_match(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, agent(hub, "agent05") as desk:
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="2000", caller="0035722123456", hold_ms=300)
        pop = await desk.wait_for("screen_pop")
        assert pop["customer"] is None and pop["caller_name"] == "2 customers share this number"
        assert sorted(m["name"] for m in pop["matches"]) == ["Eleni Georgiou", "Nikos Georgiou"]
        assert {m["kyc_status"] for m in pop["matches"]} == {"verified", "expired"}
        code, output = await call.finish()
        assert code == 0, output


async def test_caller_who_hangs_up_in_queue_is_stored_as_abandoned(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        assert hub.bus is not None
        async with hub.bus.subscribe(["contact.*", "call.*"]) as events:
            call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=800)
            code, output = await call.finish()
            assert code == 0, output  # answered although no agent was there: the caller waited in the queue
            seen = []
            async with asyncio.timeout(10):
                while not any(e.topic == "contact.abandoned" for e in seen):
                    seen.append(await events.get(timeout=10))
        topics = [e.topic for e in seen]
        assert topics.index("call.offered") < topics.index("contact.queued") < topics.index("contact.abandoned")
        call_id = next(e for e in seen if e.topic == "call.offered").call_id  # type: ignore[attr-defined]
        row = await wait_interaction(hub, call_id)
        assert row.outcome == "abandoned" and row.agent_id is None
        assert row.customer_id == "cus_demo_lena" and row.answered_at is None


async def test_call_waits_until_an_agent_logs_in(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=OLIVER, hold_ms=5000)
        await asyncio.sleep(1.5)  # the call is answered and queued; nobody is logged in
        assert hub.voice is not None and hub.voice.active_calls == 1
        async with agent(hub, "agent02") as desk:
            pop = await desk.wait_for("screen_pop")
            assert pop["customer"]["name"] == "Oliver Bennett"
            await desk.send({"type": "accept", "contact_id": pop["contact_id"]})
            await desk.wait_for("call.answered")
            code, output = await call.finish()
            assert code == 0, output
            row = await wait_interaction(hub, pop["call_id"])
            assert row.outcome == "completed" and row.agent_id == "agent02"


async def test_caller_cancels_while_ringing(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, answer_delay_s=5.0) as hub:
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_cancel.xml", service="1000", caller=LENA)
        code, output = await call.finish()
        assert code == 0, output  # 200 for the CANCEL, 487 for the INVITE
        assert hub.voice is not None
        async with asyncio.timeout(5):
            while hub.voice.active_calls or (hub.media and hub.media.open_endpoints):
                await asyncio.sleep(0.05)


async def test_plain_sipp_uac_reaches_an_agent(sipp_path: str, tmp_path: Path) -> None:
    """The README's check: `sipp -sn uac HUB -s 1000 -m 1` pops on a logged-in agent."""
    async with running_hub(tmp_path) as hub, agent(hub, "agent08") as desk:
        assert hub.sip_address is not None
        process = await asyncio.create_subprocess_exec(
            sipp_path, "-sn", "uac", f"127.0.0.1:{hub.sip_address[1]}", "-s", "1000", "-m", "1",
            "-i", "127.0.0.1", "-timeout", "20s", "-timeout_error", "-nostdin",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(tmp_path),
        )
        pop = await desk.wait_for("screen_pop")
        assert pop["dialled"] == "1000" and pop["known_caller"] is False
        out, _ = await process.communicate()
        assert process.returncode == 0, out.decode(errors="replace")
