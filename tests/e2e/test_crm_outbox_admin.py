"""An admin finds the interactions the external CRM refused, and sends them again once the
CRM is fixed: over the hub's real HTTP API, against a stand-in CRM that refuses (400,
a permanent error: dead at once) and then accepts."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import http_base, running_hub
from tests.e2e.test_crm_sync_delivery import StandInCrm

NOW = datetime.now(timezone.utc)


async def _login(http: aiohttp.ClientSession, base: str, username: str) -> dict[str, Any]:
    async with http.post(f"{base}/api/login", json={"username": username, "password": "demo"}) as resp:
        assert resp.status == 200
        return dict(await resp.json())


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with http.request(method, url, **kwargs) as resp:
        return resp.status, dict(await resp.json())


async def _until(check: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def test_dead_letters_are_listed_and_replayed_by_an_admin_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTIHUB_CRM_TOKEN", "token-for-tests")
    crm = StandInCrm(default="400")
    await crm.up()
    try:
        async with running_hub(tmp_path, crm_url=crm.url) as hub, aiohttp.ClientSession() as http:
            assert hub.center is not None and hub.crm_worker is not None
            base = http_base(hub)
            interaction_id = await hub.center.crm.record_interaction(
                customer_id="cus_demo_lena", channel="voice", direction="inbound", caller_number="+4930901820",
                dialled="1000", queue="sales", agent_id="agent01", started_at=NOW - timedelta(minutes=3),
                answered_at=NOW - timedelta(minutes=2), ended_at=NOW, outcome="completed", call_id="call-1",
                to_outbox=True,
            )
            hub.crm_worker.wake()
            await _until(lambda: _settled(crm))
            admin = await _login(http, base, "admin")
            bearer = {"Authorization": f"Bearer {admin['token']}"}

            async def dead() -> list[dict[str, Any]]:
                status, body = await _call(http, "GET", f"{base}/api/crm/outbox?state=dead", headers=bearer)
                assert status == 200
                return list(body["messages"])

            await _until(lambda: _nonempty(dead))
            [message] = await dead()
            assert message["payload"]["id"] == interaction_id or interaction_id in str(message["payload"])
            assert message["attempts"] == 1 and "400" in (message["last_error"] or "")

            # Nobody but an admin sees or touches the outbox.
            for username in ("agent01", "qa1", "super1"):
                other = await _login(http, base, username)
                status, body = await _call(
                    http, "GET", f"{base}/api/crm/outbox", headers={"Authorization": f"Bearer {other['token']}"}
                )
                assert (status, body["error"]) == (403, "forbidden"), username
            async with aiohttp.ClientSession() as anonymous:
                assert (await _call(anonymous, "GET", f"{base}/api/crm/outbox"))[0] == 401

            # Bad input names the field.
            status, body = await _call(http, "GET", f"{base}/api/crm/outbox?state=lost", headers=bearer)
            assert (status, body["field"]) == (422, "state")
            status, body = await _call(http, "GET", f"{base}/api/crm/outbox?limit=0", headers=bearer)
            assert (status, body["field"]) == (422, "limit")
            status, body = await _call(http, "POST", f"{base}/api/crm/outbox/999999/replay", headers=bearer)
            assert (status, body["error"]) == (404, "unknown_message")

            # The CRM is fixed; the admin replays from the browser (cookie: CSRF token needed).
            crm.default = "ok"
            replay = f"{base}/api/crm/outbox/{message['id']}/replay"
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                session = await _login(browser, base, "admin")
                status, body = await _call(browser, "POST", replay)
                assert (status, body["error"]) == (403, "csrf_failed")
                status, body = await _call(browser, "POST", replay, headers={"X-CSRF-Token": session["csrf_token"]})
                assert (status, body) == (200, {"replayed": 1, "id": message["id"]})
            await _until(lambda: _applied(crm))
            [key] = crm.applied
            assert key == message["idempotency_key"]  # the same key: the CRM cannot apply it twice
            status, body = await _call(http, "GET", f"{base}/api/crm/outbox?state=delivered", headers=bearer)
            assert [m["id"] for m in body["messages"]] == [message["id"]] and body["counts"]["dead"] == 0
            status, body = await _call(http, "POST", replay, headers=bearer)
            assert (status, body["error"]) == (409, "not_dead")
    finally:
        await crm.down()


async def _settled(crm: StandInCrm) -> bool:
    return bool(crm.requests)


async def _applied(crm: StandInCrm) -> bool:
    return bool(crm.applied)


async def _nonempty(fetch: Any) -> bool:
    return bool(await fetch())
