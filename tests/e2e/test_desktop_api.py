"""The agent desktop's HTTP and websocket side against a real hub: the page, customer
search and view per role (masked or not, audited), and the wrap-up of a real sipp call
stored on its CRM interaction."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cti.app import Hub
from tests.e2e.harness import agent, http_base, running_hub, start_sipp

LENA = "+4930901820"  # demo customer: Lena Hoffmann, verified VIP, accounts 0090000011 and 0090000012


async def _login(http: aiohttp.ClientSession, hub: Hub, username: str) -> dict[str, str]:
    async with http.post(f"{http_base(hub)}/api/login", json={"username": username, "password": "demo"}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    return {"Authorization": f"Bearer {body['token']}"}


async def _get(http: aiohttp.ClientSession, hub: Hub, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with http.get(f"{http_base(hub)}{path}", headers=headers or {}) as resp:
        return resp.status, await resp.json()


async def test_customer_search_and_profile_by_role(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cti.audit")
    async with running_hub(tmp_path) as hub, aiohttp.ClientSession() as http:
        # Nobody logged in: nothing about customers.
        for path in ("/api/customers?q=%2B4930901820", "/api/customers/cus_demo_lena"):
            status, body = await _get(http, hub, path)
            assert status == 401 and body["error"] == "not_logged_in", body

        as_agent = await _login(http, hub, "agent01")
        as_admin = await _login(http, hub, "admin")
        as_qa = await _login(http, hub, "qa1")

        # Search: any common phone format, an email in any case, an account number, an id.
        for query in ("+49 30 901820", "0049 30 901820", "LENA.HOFFMANN@example.de", "0090000011", "cus_demo_lena"):
            async with http.get(f"{http_base(hub)}/api/customers", params={"q": query}, headers=as_agent) as resp:
                body = await resp.json()
                assert resp.status == 200, (query, body)
                assert resp.headers["Cache-Control"] == "no-store"
            assert [c["customer_id"] for c in body["customers"]] == ["cus_demo_lena"], query
            assert body["customers"][0]["kyc_status"] == "verified"
        status, body = await _get(http, hub, "/api/customers?q=%2B15555550000", as_agent)
        assert status == 200 and body["customers"] == []

        # Bad queries name the field.
        for path, field in (
            ("/api/customers", "q"),
            ("/api/customers?q=%20%20", "q"),
            ("/api/customers?q=" + "1" * 101, "q"),
            ("/api/customers?q=lena&limit=0", "limit"),
            ("/api/customers?q=lena&limit=many", "limit"),
            ("/api/customers/cus_demo_lena?recent=-1", "recent"),
            ("/api/customers/" + "x" * 65, "customer_id"),
        ):
            status, body = await _get(http, hub, path, as_agent)
            assert status == 422 and body["field"] == field, (path, body)
            assert body["error"] in ("missing_field", "bad_field")

        # An agent (and QA) get the masked profile; the admin the full one.
        status, masked = await _get(http, hub, "/api/customers/cus_demo_lena", as_agent)
        assert status == 200, masked
        assert masked["name"] == "Lena Hoffmann" and masked["masked"] is True
        assert masked["kyc"]["status"] == "verified"
        assert masked["accounts"] and all("number" not in a for a in masked["accounts"])
        assert {a["number_masked"] for a in masked["accounts"]} == {"******0011", "******0012"}
        status, body = await _get(http, hub, "/api/customers/cus_demo_lena", as_qa)
        assert status == 200 and body["masked"] is True and all("number" not in a for a in body["accounts"])
        status, full = await _get(http, hub, "/api/customers/cus_demo_lena?recent=10", as_admin)
        assert status == 200 and full["masked"] is False
        assert {a["number"] for a in full["accounts"]} == {"0090000011", "0090000012"}
        assert len(full["recent_interactions"]) > len(masked["recent_interactions"]) == 5

        status, body = await _get(http, hub, "/api/customers/cus_nobody", as_agent)
        assert status == 404 and body["error"] == "unknown_customer"

    # Every profile read left an audit line: who, when, which customer, which view.
    reads = [r.getMessage() for r in caplog.records if r.name == "cti.audit" and "profile read" in r.getMessage()]
    assert any(m.startswith("customer profile read by agent01 (agent) at 20") and "customer=cus_demo_lena view=masked" in m
               for m in reads), reads
    assert any("by admin (admin)" in m and "customer=cus_demo_lena view=full" in m for m in reads), reads
    assert any("by qa1 (qa)" in m and "view=masked" in m for m in reads), reads
    assert any("customer=cus_nobody" in m and "no such customer" in m for m in reads), reads
    assert not any("customer=" + "x" * 65 in m for m in reads)  # refused before any read
    searches = [r.getMessage() for r in caplog.records if r.name == "cti.audit" and "customer search" in r.getMessage()]
    assert any("by agent01 (agent)" in m and "cus_demo_lena" in m for m in searches), searches


async def test_desktop_page_is_served_without_a_session(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, aiohttp.ClientSession() as http:
        for path in ("/", "/desktop"):
            async with http.get(f"{http_base(hub)}{path}") as resp:
                text = await resp.text()
                assert resp.status == 200 and resp.content_type == "text/html"
                assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
                assert resp.headers["X-Frame-Options"] == "DENY"
            assert 'id="login-form"' in text and "/static/desktop.js" in text
            assert "http://" not in text and "https://" not in text  # nothing from elsewhere
        for name, kind in (("desktop.js", "text/javascript"), ("desktop.css", "text/css")):
            async with http.get(f"{http_base(hub)}/static/{name}") as resp:
                assert resp.status == 200 and resp.content_type == kind
        for name in ("desktop.html.bak", "..%2F..%2Fapp.py", "nothing.js"):
            async with http.get(f"{http_base(hub)}/static/{name}") as resp:
                assert resp.status == 404, name


@pytest.mark.sipp
async def test_wrap_up_stores_disposition_and_notes(sipp_path: str, database_url: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, database_url=database_url) as hub, agent(hub, "agent01") as desk:
        assert hub.center is not None
        hello = next(m for m in desk.received if m["type"] == "hello")
        assert "trade_query" in hello["dispositions"] and "kyc_documents_requested" in hello["dispositions"]
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000",
                                caller="00" + LENA[1:], hold_ms=2500)
        pop = await desk.wait_for("screen_pop")
        interaction_id = pop["interaction_id"]
        assert interaction_id.startswith("int_")
        await desk.send({"type": "accept", "contact_id": pop["contact_id"]})
        await desk.wait_for("call.answered", call_id=pop["call_id"])

        # Too early: the call is still on.
        await desk.send({"type": "wrap_up", "interaction_id": interaction_id, "disposition": "resolved"})
        early = await desk.wait_for("error", request="wrap_up")
        assert early["error"] == "call_in_progress", early

        code, output = await call.finish()
        assert code == 0, output
        await desk.wait_for("call.ended", call_id=pop["call_id"])

        # Each mistake is answered with the field at fault.
        for message, error, field in (
            ({}, "missing_field", "interaction_id"),
            ({"interaction_id": 7}, "bad_field", "interaction_id"),
            ({"interaction_id": "int_somebody_elses", "disposition": "resolved"}, "no_such_interaction", "interaction_id"),
            ({"contact_id": "ct_unknown", "disposition": "resolved"}, "no_such_interaction", "contact_id"),
            ({"interaction_id": interaction_id}, "missing_field", "disposition"),
            ({"interaction_id": interaction_id, "disposition": "sold_the_farm"}, "bad_field", "disposition"),
            ({"interaction_id": interaction_id, "disposition": "resolved", "notes": 42}, "bad_field", "notes"),
            ({"interaction_id": interaction_id, "disposition": "resolved", "notes": "x" * 4001}, "bad_field", "notes"),
        ):
            await desk.send({"type": "wrap_up", **message})
            answer = await desk.wait_for("error", request="wrap_up")
            assert (answer["error"], answer["field"]) == (error, field), (message, answer)

        note = "Asked about EUR margin on MT5; sent the fee schedule."
        await desk.send({"type": "wrap_up", "interaction_id": interaction_id, "disposition": "trade_query", "notes": note})
        ok = await desk.wait_for("ok", request="wrap_up")
        assert ok["interaction_id"] == interaction_id and ok["disposition"] == "trade_query" and ok["note_added"] is True

        [row] = await hub.center.crm.list_interactions(call_id=pop["call_id"])
        assert row["id"] == interaction_id and row["customer_id"] == "cus_demo_lena"
        assert row["disposition"] == "trade_query" and row["notes"] == note

        # A correction by contact id: the disposition is replaced, the note added.
        await desk.send({"type": "wrap_up", "contact_id": pop["contact_id"], "disposition": "callback_requested",
                         "notes": "Wants a call back on Monday."})
        await desk.wait_for("ok", request="wrap_up")
        [row] = await hub.center.crm.list_interactions("cus_demo_lena", limit=1)
        assert row["disposition"] == "callback_requested"
        assert row["notes"] == note + "\nWants a call back on Monday."

        # Another agent cannot wrap up this agent's call.
        async with agent(hub, "agent02", available=False) as other:
            await other.send({"type": "wrap_up", "interaction_id": interaction_id, "disposition": "complaint"})
            refused = await other.wait_for("error", request="wrap_up")
            assert refused["error"] == "no_such_interaction" and refused["field"] == "interaction_id"
        [row] = await hub.center.crm.list_interactions(call_id=pop["call_id"])
        assert row["disposition"] == "callback_requested"
        # No external CRM configured: nothing waits in the outbox for one.
        from crm_sync.outbox import OutboxStore
        from cti.db import make_sessionmaker

        assert hub.engine is not None
        counts = await OutboxStore(make_sessionmaker(hub.engine)).counts()
        assert sum(counts.values()) == 0, counts
