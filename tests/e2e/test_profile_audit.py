"""Every customer read outside the screen pop leaves a row in the profile-access audit
(who, when, which customer, masked or full, from where), written before the data is
sent; admins list the trail, other roles cannot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cti.app import Hub
from tests.e2e.harness import http_base, running_hub


async def login(http: aiohttp.ClientSession, hub: Hub, username: str) -> dict[str, str]:
    async with http.post(f"{http_base(hub)}/api/login", json={"username": username, "password": "demo"}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    return {"Authorization": f"Bearer {body['token']}"}


async def get(http: aiohttp.ClientSession, hub: Hub, path: str, headers: dict[str, str],
              params: dict[str, str] | None = None) -> tuple[int, Any]:
    async with http.get(f"{http_base(hub)}{path}", headers=headers, params=params) as resp:
        return resp.status, await resp.json()


async def test_customer_reads_are_audited_and_listed_for_admins(tmp_path: Path, database_url: str) -> None:
    async with running_hub(tmp_path, database_url=database_url) as hub, aiohttp.ClientSession() as http:
        as_agent, as_admin = await login(http, hub, "agent01"), await login(http, hub, "admin")
        started = datetime.now(UTC) - timedelta(seconds=1)
        assert (await get(http, hub, "/api/customers/cus_demo_lena", as_agent))[0] == 200
        assert (await get(http, hub, "/api/customers/cus_demo_lena", as_admin))[0] == 200
        assert (await get(http, hub, "/api/customers/cus_nobody", as_agent))[0] == 404
        status, found = await get(http, hub, "/api/customers", as_agent, {"q": "+4930901820"})
        assert status == 200 and [c["customer_id"] for c in found["customers"]] == ["cus_demo_lena"]

        status, body = await get(http, hub, "/api/audit/customer-reads", as_admin)
        assert status == 200, body
        trail = [(e["actor"], e["customer_id"], e["action"], e["view"], e["found"]) for e in body["entries"]]
        assert trail == [  # newest first
            ("agent01", "cus_demo_lena", "search", "masked", True),
            ("agent01", "cus_nobody", "view", "masked", False),
            ("admin", "cus_demo_lena", "view", "full", True),
            ("agent01", "cus_demo_lena", "view", "masked", True),
        ], trail
        first = body["entries"][-1]
        assert first["role"] == "agent" and first["client"] == "127.0.0.1"
        assert datetime.fromisoformat(first["at"]) >= started

        status, body = await get(http, hub, "/api/audit/customer-reads", as_admin,
                                 {"customer_id": "cus_demo_lena", "actor": "agent01", "limit": "1"})
        assert status == 200 and [e["action"] for e in body["entries"]] == ["search"]
        status, body = await get(http, hub, "/api/audit/customer-reads", as_admin,
                                 {"since": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()})
        assert status == 200 and body["entries"] == []


async def test_only_admins_read_the_trail_and_bad_filters_name_the_field(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, aiohttp.ClientSession() as http:
        for username in ("agent01", "super1", "qa1"):
            status, body = await get(http, hub, "/api/audit/customer-reads", await login(http, hub, username))
            assert (status, body["error"], body["permission"]) == (403, "forbidden", "audit.read"), username
        async with http.get(f"{http_base(hub)}/api/audit/customer-reads") as resp:
            assert resp.status == 401
        as_admin = await login(http, hub, "admin")
        for params, field in (({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"since": "yesterday"}, "since"),
                              ({"customer_id": "a b"}, "customer_id")):
            status, body = await get(http, hub, "/api/audit/customer-reads", as_admin, params)
            assert (status, body["field"]) == (422, field), (params, body)
