"""Two hubs route from one shared state in Redis (CTIHUB_ROUTING_STORE=redis), with one
database between them, as a deployment of several hubs behind a SIP load balancer runs:
a call held by one hub is offered to, and taken by, an agent whose desktop is on the
other; two calls arriving at the two hubs at once never reach one agent together; an
agent's state set on one hub is what the other routes by."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from cti.app import Hub
from routing import AgentState
from tests.e2e.harness import AgentClient, agent, http_base, running_hub, start_sipp
from tests.e2e.test_call_to_pop import (
    LENA,
    OLIVER,
    interactions_of_call,
    wait_interaction,
)
from tests.e2e.test_routing_hub import call_api, login

pytestmark = pytest.mark.sipp


def rtp_ranges() -> tuple[str, str]:
    """RTP ranges of the two hubs, below the kernel's ephemeral ports (32768 and up),
    where sipp's media ports come from: two calls at once must not collide with them."""
    low = 22000 + 400 * (os.getpid() % 10)
    return f"{low}-{low + 199}", f"{low + 200}-{low + 399}"


@asynccontextmanager
async def two_hubs(
    tmp_path: Path, *, database_url: str, redis_url: str, **options: Any
) -> AsyncIterator[tuple[Hub, Hub]]:
    """Hub A and hub B: one database, one Redis, one routing namespace (fresh for this
    test, deleted after it), data dirs and ports of their own."""
    namespace = f"test-routing-{uuid.uuid4().hex[:10]}"
    environ = {"CTIHUB_ROUTING_STORE": "redis"}
    rtp_a, rtp_b = rtp_ranges()
    try:
        async with (
            running_hub(tmp_path / "a", database_url=database_url, redis_url=redis_url, environ=environ,
                        routing_namespace=namespace, rtp_ports=rtp_a, **options) as hub_a,
            running_hub(tmp_path / "b", database_url=database_url, redis_url=redis_url, environ=environ,
                        routing_namespace=namespace, rtp_ports=rtp_b, **options) as hub_b,
        ):
            assert hub_a.center is not None and hub_a.center.shared
            assert hub_b.center is not None and hub_b.center.shared
            yield hub_a, hub_b
    finally:
        await _forget(redis_url, namespace)


async def _forget(redis_url: str, namespace: str) -> None:
    """Delete a test's routing keys."""
    client = aioredis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(match=f"{{{namespace}}}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def until(test: Callable[[], bool], timeout: float = 10.0, what: str | Callable[[], str] = "") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not test():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what() if callable(what) else what}") from None


def state_on(hub: Hub, agent_id: str) -> AgentState:
    assert hub.center is not None
    return hub.center.router.agent_state(agent_id)


def holder(hubs: tuple[Hub, Hub], contact_id: str) -> Hub:
    """The one hub that holds the contact's call."""
    holding = [hub for hub in hubs if hub.center is not None and hub.center.contact(contact_id) is not None]
    assert len(holding) == 1, f"{contact_id} is held by {len(holding)} hubs"
    return holding[0]


def pops(desk: AgentClient) -> list[dict[str, Any]]:
    return [m for m in desk.received if m.get("type") == "screen_pop"]


async def test_call_on_hub_a_is_taken_by_an_agent_on_hub_b(
    sipp_path: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with (
        two_hubs(tmp_path, database_url=database_url, redis_url=redis_url) as (hub_a, hub_b),
        agent(hub_b, "agent01") as desk,  # the only agent, on hub B
    ):
        await until(lambda: state_on(hub_a, "agent01") == AgentState.AVAILABLE, what="hub A sees agent01")
        call = await start_sipp(sipp_path, hub_a, tmp_path, scenario="uac_hangup.xml", service="1000",
                                caller="00" + LENA[1:], hold_ms=6000)
        pop = await desk.wait_for("screen_pop")
        # Hub A holds the call and built the pop from the CRM; it reached hub B's desktop.
        assert holder((hub_a, hub_b), pop["contact_id"]) is hub_a
        assert pop["queue"] == "sales" and pop["customer"]["name"] == "Lena Hoffmann"
        assert pop["customer"]["kyc"]["status"] == "verified"
        await desk.send({"type": "accept", "contact_id": pop["contact_id"]})
        await desk.wait_for("ok", request="accept")
        # Hub A connected the call to the agent (the event comes from hub A).
        await desk.wait_for("call.answered", call_id=pop["call_id"])
        assert hub_a.center is not None
        contact = hub_a.center.contact(pop["contact_id"])
        assert contact is not None and contact.agent_id == "agent01" and contact.answered_at is not None
        await until(lambda: state_on(hub_b, "agent01") == AgentState.BUSY, what="hub B sees agent01 busy")
        code, output = await call.finish()
        assert code == 0, output
        await desk.wait_for("call.ended", call_id=pop["call_id"], outcome="completed")
        row = await wait_interaction(hub_a, pop["call_id"])
        assert row.agent_id == "agent01" and row.outcome == "completed" and row.customer_id == "cus_demo_lena"
        await desk.wait_for("agent.state_changed", state="available")
        # The wrap-up, sent to hub B, is stored on the interaction hub A wrote.
        await desk.send({"type": "wrap_up", "interaction_id": pop["interaction_id"], "disposition": "trade_query",
                         "notes": "asked about a pending order"})
        stored = await desk.wait_for("ok", request="wrap_up")
        assert stored["interaction_id"] == pop["interaction_id"] and stored["note_added"] is True
        (row,) = await interactions_of_call(hub_b, pop["call_id"])  # written once
        assert row.disposition == "trade_query"
        assert len(pops(desk)) == 1


async def test_two_calls_at_two_hubs_at_once_reach_one_agent_one_after_the_other(
    sipp_path: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with (
        two_hubs(tmp_path, database_url=database_url, redis_url=redis_url) as (hub_a, hub_b),
        agent(hub_b, "agent01") as desk,
    ):
        await until(lambda: state_on(hub_a, "agent01") == AgentState.AVAILABLE, what="hub A sees agent01")
        # Both callers wait for the hub's BYE: the agent hangs up each call from hub B.
        calls = await asyncio.gather(
            start_sipp(sipp_path, hub_a, tmp_path, scenario="uac_wait_bye.xml", service="1000", caller=LENA, wait_ms=30000),
            start_sipp(sipp_path, hub_b, tmp_path, scenario="uac_wait_bye.xml", service="1000", caller=OLIVER, wait_ms=30000),
        )
        first = await desk.wait_for("screen_pop")
        held = [holder((hub_a, hub_b), first["contact_id"])]
        # Both callers are in: one offered to agent01, the other waiting in the queue
        # of every replica; no second offer while agent01 has the first.
        for hub in (hub_a, hub_b):
            assert hub.center is not None
            await until(
                lambda hub=hub: len(hub.center.router.waiting("sales")) == 1,  # type: ignore[misc, union-attr]
                what=lambda: f"one caller waits: {[(h.center.router.waiting('sales'), h.center.active_contacts) for h in (hub_a, hub_b)]}"  # type: ignore[union-attr]
                             f" sipp exits {[c.process.returncode for c in calls]}",
            )
        await asyncio.sleep(1.0)
        assert len(pops(desk)) == 1
        assert hub_a.center is not None and hub_b.center is not None
        waiting = hub_a.center.router.waiting("sales")
        assert waiting == hub_b.center.router.waiting("sales") and first["contact_id"] not in waiting
        await desk.send({"type": "accept", "contact_id": first["contact_id"]})
        await desk.wait_for("call.answered", call_id=first["call_id"])
        # The first call ends; agent01 is free again and gets the caller who waited.
        await desk.send({"type": "hangup", "contact_id": first["contact_id"]})
        await desk.wait_for("call.ended", call_id=first["call_id"], outcome="completed", ended_by="agent")
        second = await desk.wait_for("screen_pop", timeout=15.0)
        assert second["contact_id"] == waiting[0] != first["contact_id"]
        held.append(holder((hub_a, hub_b), second["contact_id"]))
        await desk.send({"type": "accept", "contact_id": second["contact_id"]})
        await desk.wait_for("call.answered", call_id=second["call_id"])
        await desk.send({"type": "hangup", "contact_id": second["contact_id"]})
        await desk.wait_for("call.ended", call_id=second["call_id"], outcome="completed", ended_by="agent")
        for call in calls:
            code, output = await call.finish()
            assert code == 0, output
        assert held[0] is not held[1], "each hub held one of the calls"
        for p in (first, second):
            row = await wait_interaction(hub_a, p["call_id"])
            assert row.agent_id == "agent01" and row.outcome == "completed"
        assert len(pops(desk)) == 2


async def test_agent_states_set_on_hub_b_are_what_hub_a_routes_by(
    sipp_path: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with (
        two_hubs(tmp_path, database_url=database_url, redis_url=redis_url) as (hub_a, hub_b),
        agent(hub_b, "agent01") as desk,
    ):
        await until(lambda: state_on(hub_a, "agent01") == AgentState.AVAILABLE, what="hub A sees available")
        await desk.send({"type": "set_state", "state": "away", "reason": "break"})
        await desk.wait_for("agent.state_changed", state="away", reason="break")
        await until(lambda: state_on(hub_a, "agent01") == AgentState.AWAY, what="hub A sees away")
        assert hub_a.center is not None
        assert hub_a.center.router.agent_reason("agent01") == "break"
        # A caller at hub A waits while the agent is away...
        call = await start_sipp(sipp_path, hub_a, tmp_path, scenario="uac_wait_bye.xml", service="1000", caller=LENA,
                                wait_ms=30000)
        await until(lambda: len(hub_a.center.router.waiting("sales")) == 1, what="the caller waits at hub A")  # type: ignore[union-attr]
        await asyncio.sleep(0.5)
        assert pops(desk) == []
        # ...and is offered the moment the agent is available again on hub B.
        await desk.send({"type": "set_state", "state": "available"})
        pop = await desk.wait_for("screen_pop")
        assert holder((hub_a, hub_b), pop["contact_id"]) is hub_a
        await desk.send({"type": "accept", "contact_id": pop["contact_id"]})
        await desk.wait_for("call.answered", call_id=pop["call_id"])
        await desk.send({"type": "hangup", "contact_id": pop["contact_id"]})
        code, output = await call.finish()
        assert code == 0, output
        await desk.wait_for("call.ended", call_id=pop["call_id"], outcome="completed", ended_by="agent")
        await until(lambda: state_on(hub_a, "agent01") == AgentState.AVAILABLE, what="free again")
        # A supervisor on hub A sets the agent of hub B away: hub B's desktop hears it.
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{http_base(hub_a)}/api/login", json={"username": "super1", "password": "demo"}) as resp:
                token = (await resp.json())["token"]
            async with http.post(
                f"{http_base(hub_a)}/api/agents/agent01/state", json={"state": "away", "reason": "coaching"},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                body = await resp.json()
                assert resp.status == 200, body
        assert body["state"] == "away"
        await desk.wait_for("agent.state_changed", state="away", reason="coaching")
        await until(lambda: state_on(hub_b, "agent01") == AgentState.AWAY, what="hub B sees away")


async def test_a_hub_that_stops_logs_its_agents_out_of_the_shared_state(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    namespace = f"test-routing-{uuid.uuid4().hex[:10]}"
    environ = {"CTIHUB_ROUTING_STORE": "redis"}
    rtp_a, rtp_b = rtp_ranges()
    try:
        async with running_hub(tmp_path / "a", database_url=database_url, redis_url=redis_url, environ=environ,
                               routing_namespace=namespace, rtp_ports=rtp_a) as hub_a:
            async with (
                running_hub(tmp_path / "b", database_url=database_url, redis_url=redis_url, environ=environ,
                            routing_namespace=namespace, rtp_ports=rtp_b) as hub_b,
                agent(hub_b, "agent02"),
            ):
                await until(lambda: state_on(hub_a, "agent02") == AgentState.AVAILABLE, what="hub A sees agent02")
            # Hub B is gone: hub A must not offer calls to its agent any more.
            await until(lambda: state_on(hub_a, "agent02") == AgentState.OFFLINE, what="agent02 logged out")
    finally:
        await _forget(redis_url, namespace)


async def test_a_routing_change_on_hub_a_is_in_force_on_hub_b(database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with two_hubs(tmp_path, database_url=database_url, redis_url=redis_url) as (hub_a, hub_b), aiohttp.ClientSession() as http:
        admin = await login(http, hub_a, "admin")
        status, body = await call_api(http, hub_a, "PUT", "/api/routing/queues/sales", admin,
                                      {"required_skills": ["sales"], "max_length": 7})
        assert status == 200, body
        assert hub_b.center is not None and hub_b.routing_admin is not None
        await until(lambda: hub_b.center.router.queue("sales").max_length == 7, what="hub B's replica")  # type: ignore[union-attr]
        # Hub B's copy of the document follows (read back from the shared database).
        await until(lambda: hub_b.routing_admin.revision == 1, what="hub B reloaded")  # type: ignore[union-attr]
        status, current = await call_api(http, hub_b, "GET", "/api/routing/config", await login(http, hub_b, "admin"))
        assert status == 200 and current["revision"] == 1
        assert next(q for q in current["config"]["queues"] if q["name"] == "sales")["max_length"] == 7
        # No routing fact carries max_missed_offers: refused while hubs share routing.
        document = current["config"]
        document.setdefault("routing", {})["max_missed_offers"] = 5
        status, body = await call_api(http, hub_a, "PUT", "/api/routing/config", admin, document)
        assert (status, body["field"]) == (422, "routing.max_missed_offers"), body


async def test_an_offer_nobody_answers_expires_on_the_shared_timer(
    sipp_path: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with (
        two_hubs(tmp_path, database_url=database_url, redis_url=redis_url, offer_timeout_s=2.0) as (hub_a, hub_b),
        agent(hub_b, "agent01") as desk,
    ):
        await until(lambda: state_on(hub_a, "agent01") == AgentState.AVAILABLE, what="hub A sees agent01")
        call = await start_sipp(sipp_path, hub_a, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA,
                                hold_ms=6000)
        pop = await desk.wait_for("screen_pop")
        assert pop["offer_timeout_s"] == 2.0
        # Nobody answers: the router's timer (a TimePassed fact from either hub) withdraws
        # the offer; hub A, holding the call, tells hub B's desktop.
        withdrawn = await desk.wait_for("offer_withdrawn", timeout=8)
        assert withdrawn["contact_id"] == pop["contact_id"] and withdrawn["reason"] == "timeout"
        changed = await desk.wait_for("agent.state_changed", state="available")
        assert changed["data"]["previous"] == "reserved"
        code, output = await call.finish()
        assert code == 0, output
        assert hub_a.center is not None
        row = await wait_interaction(hub_a, pop["call_id"])
        assert row.outcome == "abandoned" and row.agent_id is None
