"""The web console in Debian's headless Chromium through its chromium-driver (selenium).

Selenium's calls block, and the gateway under test is often served in the test's own
trio run: every call here runs in a worker thread (``trio.to_thread``), so the server
goes on answering while the browser waits for it. Waits poll a condition in the page
under a generous ``trio.fail_after``, never a fixed sleep.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from .helpers import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "test-artifacts" / "console"
WAIT_SECONDS = 60

T = TypeVar("T")


def start_browser(profile: Path) -> webdriver.Chrome:
    """Start headless Chromium with the network off but for loopback."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("the console tests need Debian's chromium and chromium-driver", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
        f"--user-data-dir={profile}",
        # Everything but loopback goes to a closed port: a CDN could not be reached.
        "--proxy-server=http://127.0.0.1:9",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(name="browser")
def _browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium for one test, quit after it."""
    driver = start_browser(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Console:
    """The console at ``url`` in ``driver``, driven from trio."""

    driver: webdriver.Chrome
    url: str

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking selenium call in a thread."""
        return await trio.to_thread.run_sync(partial(function, *args))

    async def open(self, fragment: str = "") -> None:
        """Load the console's page (at ``#fragment`` if given)."""
        await self.call(self.driver.get, f"{self.url}/console{'#' + fragment if fragment else ''}")

    async def go(self, fragment: str) -> None:
        """Switch the open console to another view."""
        await self.script(f"location.hash = {fragment!r};")

    async def script(self, source: str, *args: Any) -> Any:
        """Run JavaScript in the page and return its value."""
        return await self.call(self.driver.execute_script, source, *args)

    async def find_all(self, css: str) -> list[WebElement]:
        """Return the elements matching ``css`` now."""
        return await self.call(self.driver.find_elements, By.CSS_SELECTOR, css)

    async def wait_for(self, css: str, text: str | None = None) -> WebElement:
        """Wait for an element matching ``css`` (and containing ``text``) and return it."""
        with trio.fail_after(WAIT_SECONDS):
            while True:
                for element in await self.find_all(css):
                    try:
                        if text is None or text in await self.call(lambda e=element: e.text):
                            return element
                    except WebDriverException:  # replaced while we looked: look again
                        continue
                await trio.sleep(0.1)

    async def wait_until(self, source: str) -> Any:
        """Wait until the JavaScript expression ``source`` is truthy; return its value."""
        with trio.fail_after(WAIT_SECONDS):
            while not (value := await self.script(f"return ({source});")):
                await trio.sleep(0.1)
        return value

    async def click(self, css: str, text: str | None = None) -> None:
        """Click the element matching ``css`` (and containing ``text``) once it is there."""
        element = await self.wait_for(css, text)
        await self.call(element.click)

    async def type(self, css: str, value: str) -> None:
        """Type ``value`` into the field matching ``css``."""
        element = await self.wait_for(css)
        await self.call(element.clear)
        await self.call(element.send_keys, value)

    async def sign_in_admin(self, user: str, password: str) -> None:
        """Sign in with the admin's user and password; wait for the runs view."""
        await self.open()
        await self.wait_for("#kind")
        await self.script(
            "const k = document.getElementById('kind'); k.value = 'admin';"
            "k.dispatchEvent(new Event('change'));"
        )
        await self.type("#user", user)
        await self.type("#password", password)
        await self.click("#sign-in")
        await self.wait_for("#runs")

    async def sign_in_key(self, token: str) -> None:
        """Sign in with an API key; wait for the runs view."""
        await self.open()
        await self.type("#token", token)
        await self.click("#sign-in")
        await self.wait_for("#runs")

    async def width(self, pixels: int, height: int = 800) -> None:
        """Make the page's viewport ``pixels`` wide, as a phone's is."""
        metrics = {"width": pixels, "height": height, "deviceScaleFactor": 1, "mobile": True}
        await self.call(self.driver.execute_cdp_cmd, "Emulation.setDeviceMetricsOverride", metrics)

    async def overflow(self) -> int:
        """Return by how many CSS pixels the page is wider than its viewport (0: none)."""
        value = await self.script(
            "return Math.max(document.documentElement.scrollWidth,"
            " document.body.scrollWidth) - document.documentElement.clientWidth;"
        )
        return int(value)

    async def screenshot(self, name: str) -> Path:
        """Save a screenshot for a person to look at, under test-artifacts/console/."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / (re.sub(r"[^\w.-]+", "-", name) + ".png")
        await self.call(self.driver.save_screenshot, str(path))
        return path

    async def event_ids(self) -> list[int]:
        """Return the ids of the events the live view shows, in the order shown."""
        ids = await self.script(
            "return [...document.querySelectorAll('#events [data-event-id]')]"
            ".map(e => e.dataset.eventId).filter(Boolean).map(Number);"
        )
        return [int(i) for i in ids]
