"""The supervisor wallboard in a real browser against a real hub: a supervisor logs in
(on the desktop page, which links to the wallboard); a real sipp caller waits in the
sales queue with nobody available and the tile's count rises to 1 within a second or
two, with an alert once the wait passes the threshold, then falls to 0 when the caller
hangs up; the last hour's chart shows the minute's bar; a call answered late turns the
service level red with a critical alert; the supervisor logs out a forgotten agent
from the grid and the agent's own websocket hears it; a dropped connection comes back
by itself. An agent gets no wallboard. Screenshots are kept in the test's artifacts
folder (tests/browser/conftest.py)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cti.web.wallboard import WALLBOARD
from routing import StatsChanged
from tests.browser.pages import Page
from tests.browser.pages import log_in as _log_in
from tests.e2e.harness import agent, http_base, running_hub, start_sipp

SHOWN_WITHIN_MS = 2000  # from the router's change to the figure on the screen
ACCENT = (31, 95, 191)  # --accent in wallboard.css: the chart's bars
# No demo customer has this number: no routing rule (language, compliance) narrows who
# may take the call, so any agent of the queue can.
UNKNOWN_CALLER = "+15555550123"


async def _until(test: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not test():
            await asyncio.sleep(0.01)


@pytest.mark.sipp
async def test_supervisor_watches_a_queue_and_logs_out_an_agent(
    sipp_path: str, browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    async with running_hub(tmp_path) as hub:
        assert hub.center is not None and hub.http_runner is not None
        center = hub.center

        def waiting() -> int:
            return int(center.router.stats.queue_snapshot("sales", center.clock())["ContactsInQueue"])

        context = await browser.new_context(viewport={"width": 1600, "height": 1100})
        wall = Page(await context.new_page(), artifacts)
        page = wall.page
        # The supervisor logs in where everyone does, and follows the link to the wallboard.
        await page.goto(http_base(hub) + "/")
        await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        await _log_in(page, "super1")
        await page.get_by_role("link", name="Open the supervisor wallboard").click()
        await expect(page).to_have_url(re.compile(r"/wallboard$"))
        await expect(page.locator("#connection")).to_have_text("Live")
        sales = page.locator(".tile[data-queue='sales']")
        await expect(sales.locator("h3")).to_contain_text("Sales (front office)")
        count = sales.locator("[data-field='waiting']")
        await expect(count).to_have_text("0")
        await expect(sales.locator("[data-field='service_level']")).to_contain_text("no answers yet")
        await expect(sales.locator("[data-note='service_level']")).to_have_text("target 80 % within 20 s")
        await wall.shot("quiet")

        # The sales queue's service level is now counted within 2 s (a configuration
        # change through the router's own API), so that a short test can miss it.
        # Nobody waits, so routing has nothing to do but note that statistics changed.
        sales_config = replace(center.router.queue("sales"), service_level_s=2.0)
        commands = center.router.update_queue(sales_config, center.clock())
        assert all(isinstance(c, StatsChanged) for c in commands), commands
        await expect(sales.locator("[data-note='service_level']")).to_have_text("target 80 % within 2 s")

        # Nobody is available: the caller waits in the sales queue.
        call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000",
                                caller="+4930901820", hold_ms=4000)
        await _until(lambda: waiting() == 1)
        await expect(count).to_have_text("1", timeout=SHOWN_WITHIN_MS)
        await expect(sales.locator("[data-field='longest_wait']")).to_have_text(re.compile(r"^00:0[1-9]$"), timeout=3000)
        alert = page.locator("#alerts .alert[data-queue='sales']")
        await expect(alert).to_have_text(re.compile(r"Sales \(front office\): a contact has waited longer than 2 s"))
        await expect(alert).to_have_attribute("data-severity", "warning")
        await wall.shot("caller-waiting")

        # The caller hangs up: the count falls back, the abandon shows, the alert goes.
        await _until(lambda: waiting() == 0)
        await expect(count).to_have_text("0", timeout=SHOWN_WITHIN_MS)
        await expect(sales.locator("[data-field='abandon_rate']")).to_have_text("100 %")
        await expect(sales.locator("[data-field='longest_wait']")).to_have_text("00:00")
        await expect(page.locator("#alerts")).to_be_hidden()
        code, output = await call.finish()
        assert code == 0, output
        # The last hour's chart has this minute's bar (one contact waited).
        bar_pixels = await page.locator(".chart[data-queue='sales'] canvas").evaluate(
            """(canvas, rgb) => {
                 const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
                 let n = 0;
                 for (let i = 0; i < data.length; i += 4)
                   if (data[i] === rgb[0] && data[i + 1] === rgb[1] && data[i + 2] === rgb[2]) n += 1;
                 return n;
               }""",
            list(ACCENT),
        )
        assert bar_pixels > 20, bar_pixels
        await wall.shot("caller-gone")

        async with agent(hub, "agent03", available=False) as chloe:
            row = page.locator("#agent-rows tr[data-agent='agent03']")
            await expect(row.locator(".state")).to_have_text("away (logged in)")
            # A caller waits 3 s before Chloé is ready: answered past the 2 s threshold,
            # the service level is 0 % against 80 %, and the wallboard says so in red.
            call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000",
                                    caller=UNKNOWN_CALLER, hold_ms=7000)
            await _until(lambda: waiting() == 1)
            await asyncio.sleep(3)
            await chloe.go_available()
            pop = await chloe.wait_for("screen_pop")
            await chloe.send({"type": "accept", "contact_id": pop["contact_id"]})
            await expect(row.locator(".state")).to_have_text("on contact")
            await expect(row.locator("td").nth(3)).to_contain_text("voice · Sales (front office) · answered")
            await expect(sales).to_have_attribute("data-sl", "far_below")
            await expect(sales.locator("[data-field='service_level']")).to_have_text("0 % far below target")
            alert = page.locator("#alerts .alert[data-kind='service_level_below_target']")
            await expect(alert).to_contain_text("Sales (front office): service level 0 %, below its target of 80 % within 2 s")
            await expect(alert).to_have_attribute("data-severity", "critical")
            await wall.shot("service-level-alert")
            code, output = await call.finish()
            assert code == 0, output
            await expect(row.locator(".state")).to_have_text("available")
            await expect(row.locator("td.num")).to_have_text("1")  # contacts handled

            # Chloé forgot to log out when she left. The supervisor does it from the grid.
            await expect(page.locator("#agent-counts")).to_contain_text("1 logged in")
            await row.get_by_role("button", name="Actions for Chloé Martin").click()
            menu = row.get_by_role("menu")
            await expect(menu).to_be_visible()
            await wall.shot("agent-menu")
            await menu.get_by_role("menuitem", name="Log out").click()
            await expect(page.locator("#grid-status")).to_have_text("Chloé Martin logged out.")
            await chloe.wait_for("agent.state_changed", state="offline")
            await expect(row).to_be_hidden()  # offline agents are hidden unless asked for
            await expect(page.locator("#agent-counts")).to_contain_text("0 logged in")
            await page.get_by_label("Show offline agents").check()
            await expect(row.locator(".state")).to_have_text("offline")
            await wall.shot("agent-logged-out")

        # The connection drops (the hub closes the wallboard sockets): the page says so,
        # comes back by itself, and is live again.
        app = hub.http_runner.app
        await app[WALLBOARD].close_sockets(app)
        await expect(page.locator("#connection")).to_have_text("Connection lost, reconnecting…")
        await expect(page.locator("#connection")).to_have_text("Live", timeout=5000)
        assert len(app[WALLBOARD].watchers) == 1
        assert wall.errors == [], wall.errors
        await context.close()


async def test_an_agent_gets_no_wallboard(browser: Any, artifacts: Path, tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with running_hub(tmp_path) as hub:
        context = await browser.new_context(viewport={"width": 1280, "height": 700})
        wall = Page(await context.new_page(), artifacts)
        page = wall.page
        await page.goto(http_base(hub) + "/wallboard")
        await _log_in(page, "agent01")
        await expect(page.get_by_role("heading", name="This page is for supervisors")).to_be_visible()
        await expect(page.locator("#board")).to_be_hidden()
        await expect(page.get_by_role("button", name=re.compile("^Actions for"))).to_have_count(0)
        # The hub refuses the wallboard websocket to this session anyway.
        outcome = await page.evaluate(
            """() => new Promise((resolve) => {
                 const socket = new WebSocket(`ws://${location.host}/api/wallboard/ws`);
                 socket.onopen = () => resolve("open");
                 socket.onclose = (event) => resolve(`closed ${event.code}`);
               })"""
        )
        assert outcome == "closed 1006", outcome
        await wall.shot("agent-not-a-supervisor")
        assert wall.errors == [], wall.errors
        await context.close()
