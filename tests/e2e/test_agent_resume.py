"""A desktop whose connection drops keeps the agent's state through the grace period and,
reconnecting with its last message number, receives what it missed (a screen pop sent
while it was gone); two tabs of one agent see the same desk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import websockets

from cti.app import Hub
from tests.e2e.harness import AgentClient, agent, running_hub, start_sipp

pytestmark = pytest.mark.sipp

LENA = "+4930901820"  # demo customer, sales queue on 1000


def ws_url(hub: Hub, query: str = "") -> str:
    assert hub.http_address is not None
    return f"ws://127.0.0.1:{hub.http_address[1]}/ws/agent{query}"


async def read_until(socket: Any, kind: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    while True:
        message = json.loads(await socket.recv())
        seen.append(message)
        if message["type"] == kind:
            return message


async def test_a_pop_sent_while_the_desktop_was_gone_arrives_on_resume(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, agent(hub, "agent01") as desk:
        hello = next(m for m in desk.received if m["type"] == "hello")
        assert hello["resumed"] is False and isinstance(hello["stream"], str)
        last_seq = max(m["seq"] for m in desk.received if "seq" in m and m["type"] != "hello")
        await desk.close()  # the network drops; the grace period starts

        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000",
                                caller=LENA, hold_ms=4000)
        # Still available to routing during the grace period: the call is offered to
        # agent01 although no desktop is connected.
        assert hub.center is not None
        headers = {"Authorization": f"Bearer {desk.token}"}
        async with websockets.connect(ws_url(hub, f"?resume={hello['stream']}:{last_seq}"),
                                      additional_headers=headers) as socket:
            seen: list[dict[str, Any]] = []
            again = await read_until(socket, "hello", seen)
            assert again["stream"] == hello["stream"]
            pop = await read_until(socket, "screen_pop", seen)
            if again["missed"] == 0:
                # The offer was made after the reconnect: then it came live, numbered on.
                assert pop["seq"] > again["seq"]
            else:
                assert again["resumed"] is True
                assert pop["seq"] <= again["seq"], "a replayed message keeps its number"
            assert pop["caller_e164"] == LENA
            numbers = [m["seq"] for m in seen if m["type"] != "hello"]
            assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
            assert numbers[0] == last_seq + 1, "nothing between the drop and the reconnect is lost"
            await socket.send(json.dumps({"type": "accept", "contact_id": pop["contact_id"]}))
            ok = await read_until(socket, "ok", seen)
            assert ok["request"] == "accept"
            await read_until(socket, "call.answered", seen)
        code, output = await call.finish()
        assert code == 0, output


async def test_the_missed_messages_come_in_order_after_hello(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, agent(hub, "agent02") as desk:
        hello = next(m for m in desk.received if m["type"] == "hello")
        await desk.close()
        assert hub.center is not None
        last = max(m["seq"] for m in desk.received if "seq" in m and m["type"] != "hello")
        # While the desktop is gone, the agent's state changes twice (a supervisor, say).
        hub.center.set_state("agent02", "away", "meeting")
        hub.center.set_state("agent02", "available", None)
        headers = {"Authorization": f"Bearer {desk.token}"}
        async with websockets.connect(ws_url(hub, f"?resume={hello['stream']}:{last}"), additional_headers=headers) as socket:
            again = json.loads(await socket.recv())
            assert again["type"] == "hello" and again["resumed"] is True and again["missed"] == 2
            assert again["state"] == "available"
            first, second = json.loads(await socket.recv()), json.loads(await socket.recv())
            assert (first["data"]["state"], first["seq"]) == ("away", last + 1)
            assert (second["data"]["state"], second["seq"]) == ("available", last + 2)


async def test_a_number_from_another_stream_does_not_resume(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, agent(hub, "agent03") as desk:
        headers = {"Authorization": f"Bearer {desk.token}"}
        for query in ("?resume=feedfacecafe:1", "?resume=garbage", "?resume="):
            async with websockets.connect(ws_url(hub, query), additional_headers=headers) as socket:
                hello = json.loads(await socket.recv())
                assert hello["type"] == "hello" and hello["resumed"] is False and hello["missed"] == 0
                assert hello["state"] == "available", "the agent keeps their state"


async def test_a_number_ahead_of_the_stream_does_not_resume(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, agent(hub, "agent04") as desk:
        hello = next(m for m in desk.received if m["type"] == "hello")
        headers = {"Authorization": f"Bearer {desk.token}"}
        async with websockets.connect(ws_url(hub, f"?resume={hello['stream']}:999999"), additional_headers=headers) as socket:
            again = json.loads(await socket.recv())
            assert again["resumed"] is False


async def test_two_tabs_see_the_same_desk(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, agent(hub, "agent01") as tab1:
        tab2 = AgentClient(hub, "agent01", token=tab1.token)
        await tab2.connect()
        try:
            call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000",
                                    caller=LENA, hold_ms=1500)
            pop1, pop2 = await tab1.wait_for("screen_pop"), await tab2.wait_for("screen_pop")
            assert pop1["contact_id"] == pop2["contact_id"] and pop1["seq"] == pop2["seq"]
            await tab1.send({"type": "accept", "contact_id": pop1["contact_id"]})
            # The tab that did not accept learns it was accepted, and follows the call.
            await tab2.wait_for("ok", request="accept", contact_id=pop1["contact_id"])
            await tab2.wait_for("call.answered", call_id=pop1["call_id"])
            code, output = await call.finish()
            assert code == 0, output
            await tab1.wait_for("call.ended", call_id=pop1["call_id"])
            await tab2.wait_for("call.ended", call_id=pop1["call_id"])
            # Closing one tab does not start the logout: the other is still open.
            await tab2.close()
            assert hub.center is not None
            assert hub.center.agent_status("agent01")["state"] != "offline"
        finally:
            await tab2.close()
