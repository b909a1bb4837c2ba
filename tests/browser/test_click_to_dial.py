"""Click-to-dial in a real browser against a real hub, with sipp playing the agent's
phone and the carrier's gateway: the agent finds Lena Hoffmann, presses Call on her
card, sees their phone rung first, then her line ringing and the call connected, hangs
up from the page and wraps the outbound call up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.pages import Page, log_in
from tests.e2e.harness import http_base, running_hub, start_sipp
from tests.e2e.phones import register_phone, start_phone

LENA = "+4930901820"
# Chromium shares the hub's cores: its bursts must not make the hub's overload control
# refuse the test's call (503), which is tested elsewhere (test_sip_overload).
NO_LAG_503 = {"CTIHUB_OVERLOAD_LAG_MS": "0"}


@pytest.mark.sipp
async def test_agent_calls_a_customer_from_the_card(sipp_path: str, browser: Any, artifacts: Path, tmp_path: Path) -> None:
    from playwright.async_api import expect

    customer = await start_phone(sipp_path, tmp_path, "phone_answer.xml", RING_MS=1200)
    environ = {"CTIHUB_SIP_TRUNK": f"127.0.0.1:{customer.port}", **NO_LAG_503}
    async with running_hub(tmp_path, sip_digest_algorithms="MD5", environ=environ) as hub:
        assert hub.center is not None
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", RING_MS=600)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        context = await browser.new_context(viewport={"width": 1280, "height": 1000})
        desk = Page(await context.new_page(), artifacts)
        page = desk.page
        await page.goto(http_base(hub) + "/")
        await log_in(page, "agent01")
        await expect(page.locator("#connection")).to_have_text("Connected")

        await page.get_by_label("Phone, email, account number or customer id").fill("cus_demo_lena")
        await page.get_by_role("button", name="Search", exact=True).click()
        await page.locator("#search-results").get_by_role("button", name="Lena Hoffmann").click()
        view = page.locator("#customer-view")
        call_button = view.get_by_role("button", name=f"Call Lena Hoffmann on {LENA} (work)")
        await expect(call_button).to_be_visible()
        await desk.shot("card-with-call-button")

        await call_button.click()
        await expect(page.locator("#call-panel")).to_be_visible()
        await expect(page.locator("#call-with")).to_have_text("Lena Hoffmann")
        await expect(page.locator("#dial-status")).to_contain_text("Calling your phone first")
        await expect(page.locator("#state-now")).to_have_text("busy")
        await desk.shot("calling-the-agents-phone")
        await expect(page.locator("#dial-status")).to_have_text("Lena Hoffmann is ringing…", timeout=8000)
        await desk.shot("customer-ringing")
        await expect(page.locator("#dial-status")).to_be_hidden(timeout=8000)  # she answered
        await expect(page.locator("#call-timer")).not_to_have_text("00:00", timeout=3000)
        await desk.shot("connected")

        await page.get_by_role("button", name="Hang up").click()
        await expect(page.locator("#call-panel")).to_be_hidden()
        await expect(page.locator("#wrapup-for")).to_contain_text(f"Call with Lena Hoffmann ({LENA})")
        await page.get_by_label("Disposition").select_option("callback_requested")
        await page.get_by_role("button", name="Save wrap-up").click()
        await expect(page.locator("#wrapup-status")).to_have_text("Saved: callback requested for Lena Hoffmann.")
        await desk.shot("wrapped-up")
        for peer in (phone, customer):
            code, output = await peer.finish()
            assert code == 0, output

        [row] = await hub.center.crm.list_interactions("cus_demo_lena", limit=1)
        assert (row["direction"], row["agent_id"], row["outcome"], row["disposition"]) == (
            "outbound", "agent01", "completed", "callback_requested"
        )
        assert desk.errors == [], desk.errors
        await context.close()


@pytest.mark.sipp
async def test_transfer_to_a_busy_number_keeps_the_caller_with_the_agent(
    sipp_path: str, browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    busy = await start_phone(sipp_path, tmp_path, "phone_busy.xml")
    environ = {"CTIHUB_SIP_TRUNK": f"127.0.0.1:{busy.port}", **NO_LAG_503}
    async with running_hub(tmp_path, sip_digest_algorithms="MD5", environ=environ) as hub:
        phone = await start_phone(sipp_path, tmp_path, "phone_answer.xml", RING_MS=100)
        await register_phone(sipp_path, hub, tmp_path, "agent01", phone)
        context = await browser.new_context(viewport={"width": 1280, "height": 1000})
        desk = Page(await context.new_page(), artifacts)
        page = desk.page
        await page.goto(http_base(hub) + "/")
        await log_in(page, "agent01")
        await page.get_by_label("Change to").select_option("available")
        await page.get_by_role("button", name="Set state").click()
        await expect(page.locator("#state-now")).to_have_text("available")

        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller=LENA, hold_ms=5000)
        await expect(page.locator("#call-panel")).to_be_visible(timeout=15000)  # answered on the phone
        await page.get_by_label("or to a number").fill("020 7946 0018")
        await page.get_by_role("button", name="Transfer").click()
        await expect(page.locator("#call-error")).to_have_text(
            "The transfer to +442079460018 failed (busy, 486): the caller is back with you.", timeout=8000
        )
        await expect(page.locator("#call-panel")).to_be_visible()
        await desk.shot("transfer-to-a-busy-number")
        code, output = await call.finish()
        assert code == 0, output
        await expect(page.locator("#wrapup-panel")).to_be_visible()
        for peer in (phone, busy):
            code, output = await peer.finish()
            assert code == 0, output
        assert desk.errors == [], desk.errors
        await context.close()
