"""The CRM sync inside the running hub: a signed webhook from the external CRM creates a
customer, that customer's call pops with the new profile, and the finished interaction
reaches the external CRM exactly once through the outbox."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from crm_sync.signing import sign
from tests.e2e.harness import agent, http_base, running_hub, start_sipp
from tests.e2e.test_crm_sync_delivery import StandInCrm

pytestmark = pytest.mark.sipp

SECRET = "webhook-secret-for-tests-only"


async def test_webhook_customer_pops_and_the_interaction_reaches_the_crm(
    sipp_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTIHUB_CRM_TOKEN", "token-for-tests")  # the token lives in the environment only
    crm = StandInCrm()
    await crm.up()
    try:
        async with running_hub(
            tmp_path,
            crm_url=crm.url,
            crm_webhook_secret=SECRET,
        ) as hub, agent(hub, "agent01") as desk:
            event = {
                "id": "evt_1",
                "type": "customer.created",
                "occurred_at": "2026-11-24T00:00:00Z",
                "customer": {
                    "id": "cus_webhook_1", "first_name": "Marta", "last_name": "Kowalska", "language": "pl",
                    "country": "PL", "tier": "professional", "phones": [{"number": "+48 22 123 45 67", "kind": "work"}],
                },
                "kyc": {"status": "verified", "risk_rating": "low"},
            }
            body = json.dumps(event).encode()
            async with aiohttp.ClientSession() as http:
                bad = {"X-CTIHub-Signature": sign(b"not-the-secret", int(time.time()), body), "Content-Type": "application/json"}
                async with http.post(f"{http_base(hub)}/webhooks/crm", data=body, headers=bad) as resp:
                    assert resp.status == 401
                good = {"X-CTIHub-Signature": sign(SECRET.encode(), int(time.time()), body), "Content-Type": "application/json"}
                async with http.post(f"{http_base(hub)}/webhooks/crm", data=body, headers=good) as resp:
                    assert resp.status == 200, await resp.text()
            call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller="0048221234567", hold_ms=1500)
            pop = await desk.wait_for("screen_pop")
            assert pop["customer"]["name"] == "Marta Kowalska" and pop["customer"]["kyc"]["status"] == "verified"
            await desk.send({"type": "accept", "contact_id": pop["contact_id"]})
            code, output = await call.finish()
            assert code == 0, output
            async with asyncio.timeout(15):
                while not crm.applied:
                    await asyncio.sleep(0.1)
            (delivered,) = crm.applied.values()
            assert json.dumps(delivered["body"]).count("cus_webhook_1") >= 1
            assert all(r["auth"] == "Bearer token-for-tests" for r in crm.requests)
    finally:
        await crm.down()
