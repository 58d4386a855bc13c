"""The dashboard in a real browser: Playwright driving Debian's chromium, headless.

Playwright's own browser download is never used (the CI machine has no network
for it): `scripts/test.sh` installs the distribution's `chromium` when it is
missing, and a missing browser fails these tests rather than skipping them.
Each test gets a fresh browser profile, so no key or cache leaks between tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright

__all__ = ["Browser", "Dashboard"]

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
VIEWPORT = {"width": 1400, "height": 1000}


def chromium_path() -> str:
    found = os.environ.get("OLOL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: scripts/test.sh installs it (apt-get install chromium)")
    return found


class Dashboard:
    """One page of the dashboard, with every console error and uncaught exception it produced."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []
        self.dialogs: list[str] = []  # alert()/confirm() the page opened: the XSS test wants none
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    async def _dialog(self, dialog: object) -> None:
        self.dialogs.append(getattr(dialog, "message", ""))
        await dialog.dismiss()  # type: ignore[attr-defined]

    async def open(self, key: str | None = None) -> Dashboard:
        if key is not None:  # as if the key had been typed into the prompt earlier in this tab
            await self.page.add_init_script(f"sessionStorage.setItem('olol.apiKey', {key!r});")
        await self.page.goto(f"{self.url}/ui/")
        return self

    async def live(self) -> None:
        await self.page.wait_for_selector("#conn.conn-ok", timeout=10_000)
        await self.page.wait_for_selector("#hosts tr", timeout=10_000)

    def host_row(self, host_id: str) -> str:
        return f'#hosts tr[data-host="{host_id}"]'

    async def wait_text(self, selector: str, text: str, timeout: float = 10_000) -> None:
        """Until the element's text is `text` (a function, not a string to eval: the page's CSP forbids eval)."""
        await self.page.wait_for_function(
            "([sel, text]) => { const e = document.querySelector(sel); return e !== null && e.textContent === text; }",
            arg=[selector, text], timeout=timeout)

    async def confirm(self) -> None:
        await self.page.click("#confirm-ok")


Browser = Callable[[str], Awaitable[Dashboard]]


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """`await browser(proxy_url)`: a new page in a fresh headless chromium profile."""
    async with async_playwright() as pw:
        context: BrowserContext = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True,
            viewport=VIEWPORT,  # type: ignore[arg-type]
        )
        try:
            async def new_page(url: str) -> Dashboard:
                return Dashboard(await context.new_page(), url)

            yield new_page
        finally:
            await asyncio.wait_for(context.close(), 30)
