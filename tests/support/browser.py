"""A headless Chromium driven by Selenium, for tests that use a web UI as a person does.

Debian's `chromium` and `chromium-driver` (installed by ./dev setup) are required: without them a
test fails saying so, it never skips. Every wait is explicit and says what it waited for; when
anything in the block goes wrong, a screenshot and the page source are saved and their paths are
added to the failure's message.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

T = TypeVar("T")

CHROMIUM_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
    "--disable-dev-shm-usage",
    # No WebGL: the run page's graph, drawn in software, kept ~1.5 cores busy; the forms
    # and buttons a test uses do not need it (28 CPU-seconds for two run pages, 7 without).
    "--disable-gpu",
    "--disable-software-rasterizer",
    "--window-size=1400,1000",
)
WAIT_SECONDS = 30.0
"""How long a page may take to show what a test waits for (a busy 2-core machine included)."""


class PageFailure(AssertionError):
    """A failure already saved as a screenshot and page source (named in its message)."""


@dataclass
class Page:
    """The browser's window, with waits that fail clearly."""

    driver: WebDriver
    artifacts: Path
    saved: int = 0

    def open(self, url: str) -> None:
        self.driver.get(url)

    def wait(
        self,
        what: str,
        condition: Callable[[WebDriver], T | Literal[False]],
        timeout: float = WAIT_SECONDS,
    ) -> T:
        """`condition`'s first true result; fails naming `what` when there is none in time."""
        try:
            # A page that re-renders an element found a moment ago: look again.
            waiting = WebDriverWait(
                self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,)
            )
            return waiting.until(condition)
        except TimeoutException:
            pass
        self.fail(f"timed out after {timeout:.0f}s waiting for {what}")

    def element(self, what: str, xpath: str, timeout: float = WAIT_SECONDS) -> WebElement:
        """The first element at `xpath` that is displayed (and enabled)."""

        def shown(driver: WebDriver) -> WebElement | Literal[False]:
            for found in driver.find_elements(By.XPATH, xpath):
                if found.is_displayed() and found.is_enabled():
                    return found
            return False

        return self.wait(what, shown, timeout)

    def shown(self, xpath: str) -> bool:
        """Whether an element at `xpath` is displayed now."""
        return any(found.is_displayed() for found in self.driver.find_elements(By.XPATH, xpath))

    def text(self, xpath: str) -> str:
        """The rendered text (also what is scrolled out of view) of the first element at
        `xpath`, on one line; empty when there is none. Read in one step, so an element the page
        re-renders meanwhile cannot be stale."""
        found = self._evaluate(xpath, "node.innerText")
        return " ".join(str(found or "").split())

    def attribute(self, xpath: str, name: str) -> str | None:
        """Attribute `name` of the first element at `xpath` (None without one)."""
        found = self._evaluate(xpath, f"node.getAttribute({json.dumps(name)})")
        return None if found is None else str(found)

    def _evaluate(self, xpath: str, expression: str) -> Any:
        return self.driver.execute_script(
            "const node = document.evaluate(arguments[0], document, null,"
            " XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;"
            f" return node === null ? null : {expression};",
            xpath,
        )

    def save(self) -> tuple[Path, Path]:
        """A screenshot and the page source, numbered in the order saved."""
        self.saved += 1
        self.artifacts.mkdir(parents=True, exist_ok=True)
        screenshot = self.artifacts / f"page-{self.saved}.png"
        source = self.artifacts / f"page-{self.saved}.html"
        try:
            self.driver.save_screenshot(str(screenshot))
            source.write_text(self.driver.page_source)
        except WebDriverException as error:  # the browser itself is gone
            source.write_text(f"could not read the page: {error}")
        return screenshot, source

    def fail(self, message: str) -> NoReturn:
        screenshot, source = self.save()
        try:
            url = self.driver.current_url
        except WebDriverException:
            url = "?"
        raise PageFailure(
            f"{message}\n  page: {url}\n  screenshot: {screenshot}\n  page source: {source}"
        )


def require_chromium() -> tuple[str, str]:
    """The paths of `chromium` and `chromedriver`; the test fails (never skips) without them."""
    found = []
    for command, package in (("chromium", "chromium"), ("chromedriver", "chromium-driver")):
        path = shutil.which(command)
        if path is None:
            pytest.fail(
                f"`{command}` is not installed: run ./dev setup (it installs Debian's {package})",
                pytrace=False,
            )
        found.append(path)
    return found[0], found[1]


@contextmanager
def chromium(artifacts: Path) -> Iterator[Page]:
    """A headless Chromium for the block; on any failure in it, a screenshot and the page
    source go to `artifacts` and the failure names them."""
    browser, driver_path = require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    # An explicit driver: Selenium then never looks for (or downloads) one of its own.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    page = Page(driver, artifacts)
    try:
        yield page
    except PageFailure:
        raise
    except Exception as error:
        page.fail(f"{type(error).__name__}: {error}")
    finally:
        driver.quit()


def by_text(tag: str, text: str, within: str = "") -> str:
    """An XPath: `tag` elements whose whole text is `text`, under `within` (an XPath) if given."""
    assert "'" not in text, f"quote-free text only: {text!r}"
    return f"{within}//{tag}[normalize-space()='{text}']"
