"""The full ACD wired into a real hub: real sipp callers, real agents on the websocket,
the demo CRM's profiles, and the routing configuration API.

The brokerage's rules come from the routing file (EDD or unverified KYC -> compliance
skill, VIP first, the customer's language), the account manager gets the first offer,
queue limits overflow, call back or disconnect, statistics reach the bus, and an
admin's change applies to the live router and survives a restart.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from cti import events as ev
from cti.app import Hub
from cti.bus import Subscription
from cti.routing_config import DEMO_ROUTING_FILE
from tests.e2e.harness import agent, http_base, running_hub, start_sipp

pytestmark = pytest.mark.sipp

LENA = "+4930901820"  # verified VIP, German, account manager agent08
OLIVER = "+442079460018"  # pending KYC with EDD flags, English
UNKNOWN = ("+14155550123", "+14155550124", "+14155550125")


def routing_file(tmp_path: Path, change: Any = None) -> Path:
    """The shipped demo routing, changed by `change(document)` for one test."""
    document = yaml.safe_load(DEMO_ROUTING_FILE.read_text())
    if change is not None:
        change(document)
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def queue(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(q for q in document["queues"] if q["name"] == name)
    return found


@asynccontextmanager
async def routed_hub(tmp_path: Path, routing: Path | str = "demo", **options: Any) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path, environ={"CTIHUB_ROUTING_CONFIG": str(routing)}, **options) as hub:
        yield hub


async def next_event(events: Subscription, topic: str, timeout: float = 10.0, **fields: Any) -> ev.Event:
    async with asyncio.timeout(timeout):
        while True:
            event = await events.get(timeout=timeout)
            if event.topic == topic and all(getattr(event, k) == v for k, v in fields.items()):
                return event


async def test_an_edd_caller_reaches_only_the_compliance_agent(sipp_path: str, tmp_path: Path) -> None:
    async with routed_hub(tmp_path) as hub, agent(hub, "agent03") as kyc_only, agent(hub, "agent06") as compliance:
        # agent03 (KYC 4) has been free longer; only agent06 has the compliance skill.
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="3000", caller=OLIVER, hold_ms=2500)
        pop = await compliance.wait_for("screen_pop")
        assert pop["customer"]["name"] == "Oliver Bennett"
        why = pop["why_you"]
        assert why["queue"] == "kyc" and why["strategy"] == "least_occupied"
        assert why["matched_skills"] == ["compliance", "kyc"]
        assert "edd_or_unverified_kyc_to_compliance" in why["rules"] and why["preferred_agent"] is False
        code, output = await call.finish()
        assert code == 0, output
        assert not any(m.get("type") == "screen_pop" for m in kyc_only.received)


async def test_a_vip_caller_is_offered_before_an_earlier_caller(sipp_path: str, tmp_path: Path) -> None:
    async with routed_hub(tmp_path) as hub:
        assert hub.bus is not None
        async with hub.bus.subscribe(["contact.queued"]) as events:
            first = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=UNKNOWN[0], hold_ms=7000)
            await next_event(events, "contact.queued")
            vip = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=6000)
            await next_event(events, "contact.queued")
        async with agent(hub, "agent01") as desk:  # sales 4, speaks German
            pop = await desk.wait_for("screen_pop")
            assert pop["caller_name"] == "Lena Hoffmann", pop["caller"]
            assert "vip_first" in pop["why_you"]["rules"]
            for call in (first, vip):
                code, output = await call.finish()
                assert code == 0, output


async def test_the_account_manager_gets_the_first_offer(sipp_path: str, tmp_path: Path) -> None:
    def longest_idle(document: dict[str, Any]) -> None:
        queue(document, "sales")["strategy"] = "longest_idle"
        document["routing"]["preferred_agent_s"] = 10

    # agent01 is free first, so longest idle would pick them; agent08 is Lena's manager.
    async with (
        routed_hub(tmp_path, routing_file(tmp_path, longest_idle)) as hub,
        agent(hub, "agent01") as idle_longest,
        agent(hub, "agent08") as manager,
    ):
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=2000)
        pop = await manager.wait_for("screen_pop")
        assert pop["customer"]["account_manager"] == "agent08"
        assert pop["why_you"]["preferred_agent"] is True and pop["why_you"]["strategy"] == "longest_idle"
        code, output = await call.finish()
        assert code == 0, output
        assert not any(m.get("type") == "screen_pop" for m in idle_longest.received)


async def test_a_widening_step_shows_in_why_you_and_statistics_reach_the_bus(sipp_path: str, tmp_path: Path) -> None:
    def widening(document: dict[str, Any]) -> None:
        sales = queue(document, "sales")
        sales["strategy"] = "longest_idle"
        sales["steps"] = [{"after_s": 0, "requirement": "sales >= 4"}, {"after_s": 2, "requirement": "sales >= 1"}]

    async with routed_hub(tmp_path, routing_file(tmp_path, widening)) as hub, agent(hub, "agent02") as desk:  # sales 3
        assert hub.bus is not None
        async with hub.bus.subscribe(["queue.stats_changed", "contact.queued", "contact.offered"]) as events:
            call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=UNKNOWN[0], hold_ms=4500)
            pop = await desk.wait_for("screen_pop")
            why = pop["why_you"]
            assert (why["step"], why["step_requirement"], why["step_after_s"]) == (1, "sales >= 1", 2)
            code, output = await call.finish()
            assert code == 0, output
            seen: list[ev.Event] = []
            with pytest.raises(TimeoutError):
                while True:
                    seen.append(await events.get(timeout=1.5))
        queued = next(e for e in seen if isinstance(e, ev.ContactQueued))
        offered = next(e for e in seen if isinstance(e, ev.ContactOffered))
        assert offered.step == 1 and (offered.occurred_at - queued.occurred_at).total_seconds() >= 1.9
        sales = [e for e in seen if isinstance(e, ev.QueueStatsChanged) and e.queue == "sales"]
        assert any(e.CONTACTS_IN_QUEUE == 1 and e.AGENTS_AVAILABLE == 1 for e in sales), sales
        assert any(e.AGENTS_ON_CONTACT == 1 and e.CONTACTS_IN_QUEUE == 0 for e in sales), sales
        assert sales[-1].CONTACTS_ABANDONED == 1 and sales[-1].CONTACTS_IN_QUEUE == 0  # hung up while offered
        # Coalesced: a few per second at most.
        times = [e.occurred_at for e in sales]
        assert all((b - a).total_seconds() >= 0.2 for a, b in itertools.pairwise(times)), times


async def test_queue_limits_overflow_call_back_and_disconnect(sipp_path: str, tmp_path: Path) -> None:
    def limits(document: dict[str, Any]) -> None:
        sales = queue(document, "sales")
        sales.update(max_length=1, max_wait_s=3, on_timeout={"action": "disconnect", "message": "Please call again later"})
        queue(document, "kyc").update(max_length=0, on_full={"action": "callback"})

    async with routed_hub(tmp_path, routing_file(tmp_path, limits)) as hub, agent(hub, "agent04", available=False) as support:
        assert hub.bus is not None and hub.center is not None
        async with hub.bus.subscribe(["contact.*", "call.ended"]) as events:
            waiting = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_wait_bye.xml", service="1000", caller=UNKNOWN[0])
            await next_event(events, "contact.queued", queue="sales")
            overflowing = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=UNKNOWN[1], hold_ms=3000)
            moved = await next_event(events, "contact.overflowed")
            assert (moved.from_queue, moved.to_queue, moved.reason) == ("sales", "support", "queue_full")  # type: ignore[attr-defined]
            await support.go_available()
            pop = await support.wait_for("screen_pop")
            assert pop["queue"] == "support" and pop["caller"].endswith(UNKNOWN[1].lstrip("+"))

            called_back = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_wait_bye.xml", service="3000", caller=LENA)
            callback = await next_event(events, "contact.callback_scheduled")
            assert callback.customer_id == "cus_demo_lena" and callback.task_id  # type: ignore[attr-defined]
            tasks = await hub.center.crm.open_tasks("cus_demo_lena")
            assert any(t.id == callback.task_id and t.kind == "callback" for t in tasks)  # type: ignore[attr-defined]
            code, output = await called_back.finish()
            assert code == 0, output  # the hub hung up politely: BYE

            dropped = await next_event(events, "contact.disconnected")
            assert dropped.queue == "sales" and dropped.reason == "max_wait"  # type: ignore[attr-defined]
            assert dropped.message == "Please call again later"  # type: ignore[attr-defined]
            code, output = await waiting.finish()
            assert code == 0, output
            ended = await next_event(events, "call.ended", outcome="missed")
            assert ended.agent_id is None  # type: ignore[attr-defined]
            code, output = await overflowing.finish()
            assert code == 0, output


async def test_missed_offers_put_the_agent_away_and_wrap_up_ends_on_time(sipp_path: str, tmp_path: Path) -> None:
    def timers(document: dict[str, Any]) -> None:
        queue(document, "sales").update(strategy="longest_idle", reservation_timeout_s=1.5, wrap_up_s=1)
        document["routing"]["max_missed_offers"] = 1

    async with routed_hub(tmp_path, routing_file(tmp_path, timers)) as hub, agent(hub, "agent02") as desk:
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=UNKNOWN[0], hold_ms=4500)
        first = await desk.wait_for("screen_pop")
        assert first["offer_timeout_s"] == 1.5
        withdrawn = await desk.wait_for("offer_withdrawn", timeout=5)
        assert withdrawn["reason"] == "timeout"
        await desk.wait_for("agent.state_changed", state="away", reason="missed")
        await desk.go_available()  # back: the same caller is offered again
        second = await desk.wait_for("screen_pop")
        assert second["contact_id"] == first["contact_id"]
        await desk.send({"type": "accept", "contact_id": second["contact_id"]})
        await desk.wait_for("call.answered")
        code, output = await call.finish()
        assert code == 0, output
        wrapping = await desk.wait_for("agent.state_changed", state="wrap_up")
        ready = await desk.wait_for("agent.state_changed", state="available", timeout=5)
        took = datetime.fromisoformat(ready["occurred_at"]) - datetime.fromisoformat(wrapping["occurred_at"])
        assert 0.9 <= took.total_seconds() <= 3, took


# --- the configuration API ----------------------------------------------------------------


async def login(http: aiohttp.ClientSession, hub: Hub, username: str) -> dict[str, str]:
    async with http.post(f"{http_base(hub)}/api/login", json={"username": username, "password": "demo"}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    return {"Authorization": f"Bearer {body['token']}"}


async def call_api(http: aiohttp.ClientSession, hub: Hub, method: str, path: str, headers: dict[str, str],
                   body: Any = None) -> tuple[int, Any]:
    async with http.request(method, f"{http_base(hub)}{path}", headers=headers,
                            data=None if body is None else json.dumps(body)) as resp:
        return resp.status, await resp.json()


async def test_the_api_rejects_bad_configuration_naming_the_field(tmp_path: Path) -> None:
    async with routed_hub(tmp_path) as hub, aiohttp.ClientSession() as http:
        admin = await login(http, hub, "admin")
        status, body = await call_api(http, hub, "PUT", "/api/routing/queues/sales", admin,
                                      {"required_skills": ["sales"], "max_length": "many"})
        assert (status, body["field"]) == (422, "max_length"), body
        status, current = await call_api(http, hub, "GET", "/api/routing/config", admin)
        assert status == 200 and current["revision"] == 0 and current["source"].endswith("demo.yaml")
        document = current["config"]
        document["queues"][1]["on_full"] = {"action": "overflow", "to_queue": "nowhere"}
        status, body = await call_api(http, hub, "PUT", "/api/routing/config", admin, document)
        assert (status, body["field"]) == (422, "queues[1].on_full.to_queue"), body
        status, body = await call_api(http, hub, "PUT", "/api/routing/agents/nobody", admin, {"skills": ["sales"]})
        assert (status, body["field"]) == (422, "id"), body
        status, body = await call_api(http, hub, "PUT", "/api/routing/rules/vip_first", admin, {"when": "tier ==", "priority": 2})
        assert (status, body["field"]) == (422, "when"), body
        status, body = await call_api(http, hub, "GET", "/api/routing/queues/nowhere", admin)
        assert status == 404
        assert hub.center is not None and hub.center.router.queue("sales").max_length == 30  # nothing changed

        supervisor = await login(http, hub, "super1")
        for method, path in (("GET", "/api/routing/config"), ("PUT", "/api/routing/queues/sales")):
            status, body = await call_api(http, hub, method, path, supervisor, {})
            assert status == 403, body
        status, _ = await call_api(http, hub, "GET", "/api/routing/config", {})
        assert status == 401

        # With the session cookie, a change needs the CSRF token.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.post(f"{http_base(hub)}/api/login", json={"username": "admin", "password": "demo"}) as resp:
                csrf = (await resp.json())["csrf_token"]
            rule = {"when": 'tier == "vip"', "priority": 5}
            status, body = await call_api(browser, hub, "PUT", "/api/routing/rules/vip_first", {}, rule)
            assert (status, body["error"]) == (403, "csrf_failed")
            status, body = await call_api(browser, hub, "PUT", "/api/routing/rules/vip_first", {"X-CSRF-Token": csrf}, rule)
            assert status == 200 and body == {"name": "vip_first", **rule}, body

        # Every route of the OpenAPI document exists.
        status, document = await call_api(http, hub, "GET", "/api/routing/openapi.json", admin)
        assert status == 200 and document["openapi"].startswith("3.1")
        assert hub.http_runner is not None
        routes = {(r.method.lower(), r.resource.canonical) for r in hub.http_runner.app.router.routes() if r.resource}
        for path, operations in document["paths"].items():
            for method in operations:
                if method != "parameters":
                    assert (method, path) in routes, (method, path)


async def test_a_change_applies_live_and_survives_a_restart(sipp_path: str, database_url: str, tmp_path: Path) -> None:
    async with routed_hub(tmp_path, database_url=database_url) as hub, aiohttp.ClientSession() as http:
        admin = await login(http, hub, "admin")
        async with agent(hub, "agent02") as desk:  # sales only: no KYC calls yet
            status, body = await call_api(http, hub, "PUT", "/api/routing/agents/agent02", admin,
                                          {"skills": {"sales": 3, "kyc": 2}, "languages": ["en"]})
            assert status == 200 and body["skills"] == {"sales": 3, "kyc": 2}, body
            call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="3000", caller=UNKNOWN[2], hold_ms=1500)
            pop = await desk.wait_for("screen_pop")
            assert pop["queue"] == "kyc" and pop["why_you"]["matched_skills"] == ["kyc"]
            code, output = await call.finish()
            assert code == 0, output
        status, body = await call_api(http, hub, "PUT", "/api/routing/queues/support", admin,
                                      {**(await call_api(http, hub, "GET", "/api/routing/queues/support", admin))[1],
                                       "max_length": 7, "wrap_up_s": 5})
        assert status == 200 and body["max_length"] == 7
    async with routed_hub(tmp_path, database_url=database_url) as hub, aiohttp.ClientSession() as http:
        assert hub.center is not None
        assert hub.center.router.profile("agent02").level("kyc") == 2
        assert hub.center.router.queue("support").max_length == 7 and hub.center.router.queue("support").wrap_up_s == 5
        admin = await login(http, hub, "admin")
        status, current = await call_api(http, hub, "GET", "/api/routing/config", admin)
        assert status == 200 and current["revision"] == 2 and current["updated_by"] == "admin"
        assert current["source"] == "the copy saved in the database (revision 2)"
        assert datetime.fromisoformat(current["updated_at"]).tzinfo is not None
