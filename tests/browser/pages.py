"""What the browser tests share: a page with its numbered screenshots, and the login form."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Page:
    """The page and its screenshots, numbered in the order they were taken; script
    errors on the page are collected in `errors`."""

    def __init__(self, page: Any, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.shots = 0
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    async def shot(self, name: str) -> Path:
        self.shots += 1
        path = self.folder / f"{self.shots:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


async def log_in(page: Any, username: str, password: str = "demo") -> None:
    """Fill and send the login form every page of the hub has."""
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
