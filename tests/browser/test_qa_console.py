"""The QA console in a real browser against a real hub: a QA user logs in, finds Lena
Hoffmann's call, opens it, plays it (the audio element's clock runs), seeks by clicking
the waveform (the player jumps there, fetching with Range requests), sees the PCI pause
shaded, pins a comment and scores the call on the admin's form. The admin finds the
plays in the audit tab and saves a new version of the form in the forms tab; the agent
of the call sees the evaluation as "my evaluations" and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from tests.browser.pages import Page
from tests.e2e.harness import http_base, running_hub
from tests.e2e.test_qa_api import FORM, add_interaction, add_recording

SECONDS = 300.0  # long enough that the player does not fetch it whole before the seek
PAUSE = (120.0, 165.0)  # the PCI pause, seconds


async def _log_in(page: Any, username: str) -> None:
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill("demo")
    await page.get_by_role("button", name="Log in").click()


async def _current_time(page: Any) -> float:
    return float(await page.evaluate("() => document.getElementById('audio').currentTime"))


async def test_qa_reviews_a_call_in_the_browser(browser: Any, artifacts: Path, tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with running_hub(tmp_path) as hub:
        recording_id = await add_recording(hub, agent_id="agent01", seconds=SECONDS, paused=PAUSE,
                                           at=datetime.now(UTC).replace(microsecond=0))
        await add_interaction(hub, recording_id, customer_id="cus_demo_lena", disposition="trade_query",
                              notes="Asked about the spread")
        base = http_base(hub)
        async with aiohttp.ClientSession() as http:  # the admin's form, over the API
            async with http.post(f"{base}/api/login", json={"username": "admin", "password": "demo"}) as resp:
                token = (await resp.json())["token"]
            async with http.post(f"{base}/api/qa/forms", json=FORM, headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 201
                form_id = (await resp.json())["id"]

        context = await browser.new_context(viewport={"width": 1400, "height": 1100})
        console = Page(await context.new_page(), artifacts)
        page = console.page
        # A contact center's link, not loopback: the player cannot have the whole file
        # before the seek, so the seek must fetch the clicked moment itself.
        cdp = await context.new_cdp_session(page)
        await cdp.send("Network.enable")
        await cdp.send("Network.emulateNetworkConditions",
                       {"offline": False, "latency": 5, "downloadThroughput": 256 * 1024, "uploadThroughput": -1})
        await page.goto(base + "/qa")
        await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        await _log_in(page, "qa1")
        await expect(page.get_by_role("heading", name="Find recordings")).to_be_visible()
        await expect(page.get_by_role("button", name="Audit")).to_be_hidden()  # admins only

        # Search by the customer's name.
        await page.get_by_label("Customer (id or name)").fill("hoffmann")
        await page.get_by_role("button", name="Search", exact=True).click()
        rows = page.locator("#results tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("Lena Hoffmann")
        await expect(rows.first).to_contain_text("trade query")
        await expect(page.locator("#export-link")).to_have_attribute("href", "/api/recordings/export.csv?customer=hoffmann")
        await console.shot("search")

        # Open it: the waveform, with the PCI pause shaded and said in words.
        await rows.first.get_by_role("button", name="Open").click()
        await expect(page.locator("#player-panel")).to_be_visible()
        await expect(page.locator("#pauses")).to_have_text("Paused (PCI): 2:00–2:45")
        await page.wait_for_function("() => document.getElementById('audio').readyState >= 1")
        shade = await page.evaluate(
            """([a, b]) => {
                 const canvas = document.getElementById('waveform');
                 const ctx = canvas.getContext('2d');
                 const x = Math.round(canvas.width * (a + b) / 2);
                 const inside = ctx.getImageData(x, 5, 1, 1).data;
                 const outside = ctx.getImageData(Math.round(canvas.width * 0.2), 5, 1, 1).data;
                 return [Array.from(inside), Array.from(outside)];
               }""",
            [PAUSE[0] / SECONDS, PAUSE[1] / SECONDS],
        )
        inside, outside = shade
        assert inside[0] > inside[2] + 40, inside  # amber-ish: the pause
        assert abs(outside[0] - outside[2]) < 10, outside  # the grey background: no pause there
        await console.shot("opened")

        # It plays: the audio element's clock advances.
        await page.get_by_role("button", name="Play").click()
        await page.wait_for_function("() => document.getElementById('audio').currentTime > 0.6", timeout=10000)
        await expect(page.get_by_role("button", name="Pause")).to_be_visible()
        await console.shot("playing")

        # Click the waveform at three quarters: the player jumps to about 225 s, and
        # fetches that moment with a Range request (44 bytes of WAV header, then 32000
        # bytes a second) that the hub answers with 206.
        target = 0.75 * SECONDS

        def seek_fetch(response: Any) -> bool:
            header = response.request.headers.get("range") or ""
            if not response.url.endswith(f"/api/recordings/{recording_id}/audio") or not header.startswith("bytes="):
                return False
            return abs((int(header[6:].split("-")[0]) - 44) / 32000 - target) < 3

        canvas = page.locator("#waveform")
        box = await canvas.bounding_box()
        assert box is not None
        async with page.expect_response(seek_fetch, timeout=10000) as fetched:
            await canvas.click(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
        assert (await fetched.value).status == 206
        await page.wait_for_function(
            "(target) => { const a = document.getElementById('audio'); return !a.seeking && Math.abs(a.currentTime - target) < 1.5; }",
            arg=target, timeout=10000,
        )
        await console.shot("seeked")

        # Pin a comment at the current moment (pause first so the moment holds still).
        await page.get_by_role("button", name="Pause").click()
        at = await _current_time(page)
        await page.get_by_label("Comment at").fill("Customer repeats the card number here")
        await page.get_by_role("button", name="Add comment").click()
        comment = page.locator("#comments li").filter(has_text="Customer repeats the card number here")
        await expect(comment).to_have_count(1)
        minute, second = divmod(int(at), 60)
        await expect(comment.locator("button.at")).to_have_text(f"{minute}:{second:02d}")
        # Its marker seeks back to it.
        await page.get_by_role("button", name="Back 5 s").click()
        await comment.locator("button.at").click()
        assert abs(await _current_time(page) - at) < 1.0

        # Score on the form: the evaluation panel renders its questions.
        evaluation = page.locator("#evaluation-form")
        await expect(evaluation.get_by_label("Form")).to_have_value(str(form_id))
        await page.locator("#question-greeting").get_by_label("Yes").check()
        await page.get_by_role("button", name="Save evaluation").click()
        await expect(page.locator("#evaluation-error")).to_contain_text("Built rapport")  # unanswered, said so
        await page.locator("#question-rapport").get_by_label("4").check()
        await page.locator("#question-risk_warning").get_by_label("N/A").check()
        await page.get_by_label("Summary").fill("Friendly; the risk warning did not come up.")
        await page.get_by_role("button", name="Save evaluation").click()
        await expect(page.locator("#evaluation-status")).to_have_text("Saved: score 91.7 %.")
        await expect(page.locator("#evaluations li").first).to_contain_text("91.7 %")
        await console.shot("scored")
        assert console.errors == [], console.errors

        # The admin's audit tab shows qa1's plays of this recording.
        admin_context = await browser.new_context(viewport={"width": 1400, "height": 900})
        admin = Page(await admin_context.new_page(), artifacts)
        await admin.page.goto(base + "/qa")
        await _log_in(admin.page, "admin")
        await admin.page.get_by_role("button", name="Audit").click()
        audit_rows = admin.page.locator("#audit-table tbody tr")
        await expect(audit_rows.first).to_contain_text("qa1")
        await expect(audit_rows.first).to_contain_text("play")
        await expect(audit_rows.first).to_contain_text(recording_id)
        await admin.shot("admin-audit")
        # The forms tab: the admin saves a new version of the form from its JSON.
        await admin.page.get_by_role("button", name="Forms").click()
        forms = admin.page.locator("#forms-table tbody tr")
        await expect(forms).to_have_count(1)
        await expect(forms.first).to_contain_text("Sales call")
        await expect(forms.first).to_contain_text("active")
        await admin.page.get_by_label("Definition").fill('{"name": "Sales call", "sections": []}')
        await admin.page.get_by_role("button", name="Save form").click()
        await expect(admin.page.locator("#form-error")).to_have_text("sections: a form has a non-empty list of sections")
        await admin.page.get_by_label("Definition").fill(
            '{"name": "Sales call", "sections": [{"id": "close", "title": "Closing", '
            '"questions": [{"id": "summary", "text": "Summarised the next steps", "kind": "yes_no"}]}]}'
        )
        await admin.page.get_by_role("button", name="Save form").click()
        await expect(admin.page.locator("#form-status")).to_have_text("Saved Sales call, version 2.")
        await expect(forms).to_have_count(2)
        await expect(forms.nth(0)).to_contain_text("active")
        await expect(forms.nth(1)).to_contain_text("retired")
        await admin.shot("admin-forms")
        assert admin.errors == [], admin.errors

        # The agent sees their evaluation, and no recordings.
        agent_context = await browser.new_context(viewport={"width": 1280, "height": 800})
        mine = Page(await agent_context.new_page(), artifacts)
        await mine.page.goto(base + "/qa")
        await _log_in(mine.page, "agent01")
        await expect(mine.page.get_by_role("heading", name="My evaluations")).to_be_visible()
        await expect(mine.page.locator("#review-view")).to_be_hidden()
        item = mine.page.locator("#mine-list li")
        await expect(item).to_have_count(1)
        await item.get_by_role("button").click()
        await expect(mine.page.locator("#mine-detail")).to_contain_text("Score 91.7 %")
        await expect(mine.page.locator("#mine-detail")).to_contain_text("Greeted the caller by name")
        await mine.shot("agent-my-evaluations")
        assert mine.errors == [], mine.errors
        for ctx in (context, admin_context, agent_context):
            await ctx.close()
