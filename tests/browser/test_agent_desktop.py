"""The agent desktop in a real browser against a real hub: an agent logs in on the page,
goes available, gets a real sipp call with Lena Hoffmann's card, accepts it, pauses the
recording, wraps up after the caller hangs up, and finds the wrap-up in her history.
A QA user gets the "for agents" page and no agent controls."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.pages import Page
from tests.browser.pages import log_in as _log_in
from tests.e2e.harness import http_base, running_hub, start_sipp

LENA = "+4930901820"  # demo customer: Lena Hoffmann, verified VIP; the sales queue records
NOTE = "Asked about EUR margin on MT5; fee schedule sent by email."
KYC_GREEN = "rgb(27, 127, 59)"  # --kyc-verified in desktop.css
KYC_AMBER = "rgb(240, 165, 0)"  # --kyc-pending


@pytest.mark.sipp
async def test_agent_takes_a_call_and_wraps_up(sipp_path: str, browser: Any, artifacts: Path, tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with running_hub(tmp_path) as hub:
        assert hub.center is not None
        context = await browser.new_context(viewport={"width": 1280, "height": 1000})
        desk = Page(await context.new_page(), artifacts)
        page = desk.page
        await page.goto(http_base(hub) + "/")
        await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        await desk.shot("login")

        await _log_in(page, "agent01")
        await expect(page.locator("#connection")).to_have_text("Connected")
        await expect(page.locator("#state-now")).to_have_text("away (logged in)")
        await page.get_by_label("Change to").select_option("available")
        await page.get_by_role("button", name="Set state").click()
        await expect(page.locator("#state-now")).to_have_text("available")
        await desk.shot("available")

        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000",
                                caller="00" + LENA[1:], hold_ms=7000)
        card = page.locator("#card")
        await expect(card.locator(".customer-name")).to_have_text("Lena Hoffmann", timeout=15000)
        badge = card.locator(".kyc .kyc-badge")
        await expect(badge).to_have_text("verified")
        await expect(badge).to_have_css("background-color", KYC_GREEN)
        await expect(card.locator(".facts")).to_contain_text("vip")
        await expect(card.locator("table.accounts")).to_contain_text("******0011")
        await expect(card.locator("table.accounts")).not_to_contain_text("0090000011")
        await expect(card.locator("ul.leads")).to_contain_text("managed portfolios")
        await expect(page.locator("#offer-why")).to_contain_text("chosen for your skills: sales")
        await expect(page.locator("#offer-seconds")).to_have_text(re.compile(r"^\d+ s$"))  # the ring countdown
        await desk.shot("offer")

        # Keyboard: the offer took the focus (the agent was not typing), Enter accepts.
        accept = page.get_by_role("button", name="Accept")
        await expect(accept).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator("#call-panel")).to_be_visible()
        await expect(page.locator("#offer-panel")).to_be_hidden()
        await expect(page.locator("#call-with")).to_have_text("Lena Hoffmann")
        await expect(page.locator("#call-timer")).not_to_have_text("00:00", timeout=3000)

        indicator = page.locator("#rec-indicator")
        await expect(indicator).to_have_text("recording")
        await page.get_by_role("button", name="Pause recording (PCI)").click()
        await expect(indicator).to_have_text("paused (PCI)")
        await desk.shot("call-recording-paused")
        await page.get_by_role("button", name="Resume recording").click()
        await expect(indicator).to_have_text("recording")

        code, output = await call.finish()  # the caller hangs up
        assert code == 0, output
        await expect(page.locator("#call-panel")).to_be_hidden()
        await expect(page.locator("#wrapup-panel")).to_be_visible()
        await expect(page.get_by_label("Disposition")).to_be_focused()

        # Saving without a disposition names the field on the page.
        await page.get_by_role("button", name="Save wrap-up").click()
        await expect(page.locator("#disposition-error")).to_have_text("Choose a disposition.")
        await page.get_by_label("Disposition").select_option("trade_query")
        await page.get_by_label("Notes").fill(NOTE)
        await desk.shot("wrap-up")
        await page.get_by_role("button", name="Save wrap-up").click()
        await expect(page.locator("#wrapup-status")).to_have_text("Saved: trade query for Lena Hoffmann.")

        # Her history, found through the page's search, shows the wrap-up.
        await page.get_by_label("Phone, email, account number or customer id").fill("+49 30 901820")
        await page.get_by_role("button", name="Search", exact=True).click()
        await page.locator("#search-results").get_by_role("button", name="Lena Hoffmann").click()
        view = page.locator("#customer-view")
        latest = view.locator(".history li").first
        await expect(latest.locator(".disposition")).to_have_text("trade query")
        await expect(latest.locator(".notes")).to_have_text(NOTE)
        await expect(latest).to_contain_text("agent01")
        await desk.shot("customer-history")

        [row] = await hub.center.crm.list_interactions("cus_demo_lena", limit=1)
        assert row["disposition"] == "trade_query" and row["notes"] == NOTE and row["agent_id"] == "agent01"

        # KYC pending shows amber, with the EDD reasons spelt out.
        await page.get_by_label("Phone, email, account number or customer id").fill("+44 20 7946 0018")
        await page.get_by_role("button", name="Search", exact=True).click()
        await page.locator("#search-results").get_by_role("button", name="Oliver Bennett").click()
        await expect(view.locator(".customer-name")).to_have_text("Oliver Bennett")
        await expect(view.locator(".kyc .kyc-badge")).to_have_text("pending")
        await expect(view.locator(".kyc .kyc-badge")).to_have_css("background-color", KYC_AMBER)
        await expect(view.locator(".edd-reasons")).to_contain_text("unusual transactions")
        await desk.shot("customer-edd")

        # Two customers share one number: the agent picks who is calling.
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="2000",
                                caller="0035722123456", hold_ms=2500)
        await expect(page.locator("#matches")).to_be_visible(timeout=15000)
        await expect(page.locator("#offer-caller")).to_contain_text("2 customers share this number")
        await page.locator("#match-list").get_by_role("button", name="Eleni Georgiou").click()
        await expect(card.locator(".customer-name")).to_have_text("Eleni Georgiou")
        await expect(page.locator("#matches")).to_be_hidden()
        await expect(page.locator("#offer-caller")).to_contain_text("Eleni Georgiou")
        await desk.shot("shared-number-picked")
        code, output = await call.finish()  # the caller gives up before an answer
        assert code == 0, output
        await expect(page.locator("#offer-panel")).to_be_hidden()
        assert desk.errors == [], desk.errors
        await context.close()


async def test_qa_user_gets_no_agent_controls(browser: Any, artifacts: Path, tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with running_hub(tmp_path) as hub:
        context = await browser.new_context(viewport={"width": 1280, "height": 700})
        desk = Page(await context.new_page(), artifacts)
        page = desk.page
        await page.goto(http_base(hub) + "/desktop")
        await _log_in(page, "qa1")
        await expect(page.get_by_role("heading", name="This page is for agents")).to_be_visible()
        await expect(page.locator("#not-agent-text")).to_contain_text("qa role")
        await expect(page.locator("#desk")).to_be_hidden()
        for name in ("Accept", "Reject", "Hang up", "Set state", "Save wrap-up"):
            await expect(page.get_by_role("button", name=name)).to_have_count(0)  # none shown, none in the a11y tree
        await desk.shot("qa-not-an-agent")

        # The hub refuses the agent websocket to this session anyway.
        outcome = await page.evaluate(
            """() => new Promise((resolve) => {
                 const socket = new WebSocket(`ws://${location.host}/ws/agent`);
                 socket.onopen = () => resolve("open");
                 socket.onclose = (event) => resolve(`closed ${event.code}`);
               })"""
        )
        assert outcome == "closed 1006", outcome

        # After a reload the page still knows who is there (cookie session, /api/me).
        await page.reload()
        await expect(page.get_by_role("heading", name="This page is for agents")).to_be_visible()
        await page.get_by_role("button", name="Log out").click()
        await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        assert desk.errors == [], desk.errors
        await context.close()
