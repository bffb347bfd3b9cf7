"""/docs in headless Chromium (Debian's, driven by selenium through Debian's chromedriver):
the page loads with every request to the server itself, lists the v1, v2 and operations
routes, and a "Try it out" prediction with a user key entered in Authorize answers 200."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.day_one.conftest import USER_KEY
from tests.support.pipeline import REPO
from tests.support.server import ROWS, ServerProcess

# Where to keep the screenshot of the answered prediction besides the test's tmp folder.
SCREENSHOT_ENV = "DOCS_SCREENSHOT"
V1 = "/v1/models/{model_name}:predict"
WAIT = 60


def chromium() -> tuple[str, str]:
    """Debian's chromium and chromedriver, installed (scripts/apt-install.sh) if missing."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        subprocess.run(
            ["bash", str(REPO / "scripts" / "apt-install.sh"), "chromium", "chromium-driver"],
            check=True,
            timeout=900,
        )
    return str(shutil.which("chromium")), str(shutil.which("chromedriver"))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    binary, driver = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",  # as root, in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,2200",
        # Chromium's own traffic (updates, sync, safe browsing): not the page's, and off.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def requested_urls(browser: WebDriver) -> list[str]:
    """Every URL the page asked for so far (DevTools' Network.requestWillBeSent)."""
    urls = []
    for entry in browser.get_log("performance"):
        message: dict[str, Any] = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def operation(browser: WebDriver, path: str, method: str) -> WebElement:
    for block in browser.find_elements(By.CSS_SELECTOR, f".opblock-{method}"):
        found = block.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
        if found and found[0].get_attribute("data-path") == path:
            return block
    raise AssertionError(f"{method.upper()} {path} not on the page")


def test_docs_page_serves_itself_and_tries_a_prediction(
    browser: WebDriver, keyed_server: ServerProcess, tmp_path: Path
) -> None:
    wait = WebDriverWait(browser, WAIT)
    browser.get(f"{keyed_server.url}/docs")
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))

    paths = {
        element.get_attribute("data-path")
        for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    for route in (V1, "/v2/models/{model_name}/infer", "/v2/health/ready", "/health"):
        assert route in paths, sorted(p for p in paths if p)
    assert {"/feedback", "/retrain/trigger", "/logs/{limit}"} <= paths

    # Authorize with a user key (the X-API-Key scheme).
    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
    dialog = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
    for section in dialog.find_elements(By.CSS_SELECTOR, ".auth-container"):
        if "ApiKeyAuth" in section.text:
            section.find_element(By.CSS_SELECTOR, "input").send_keys(USER_KEY)
            section.find_element(By.CSS_SELECTOR, ".modal-btn.authorize").click()
            break
    else:
        raise AssertionError(f"no ApiKeyAuth in the dialog: {dialog.text}")
    dialog.find_element(By.CSS_SELECTOR, ".btn-done").click()

    # Try it out: v1 predict with a real row.
    block = operation(browser, V1, "post")
    block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda _: block.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    for select in block.find_elements(By.CSS_SELECTOR, ".parameters select"):
        Select(select).select_by_visible_text("california-housing")
    body = wait.until(lambda _: block.find_element(By.CSS_SELECTOR, "textarea.body-param__text"))
    body.clear()
    body.send_keys(json.dumps({"instances": [list(ROWS[0])]}))
    block.find_element(By.CSS_SELECTOR, ".execute").click()
    status = wait.until(
        lambda _: block.find_element(
            By.CSS_SELECTOR, ".live-responses-table .response .response-col_status"
        )
    )
    answer = block.find_element(
        By.CSS_SELECTOR, ".live-responses-table .response .response-col_description pre"
    )
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", status)
    browser.save_screenshot(str(tmp_path / "docs.png"))
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copy(tmp_path / "docs.png", os.environ[SCREENSHOT_ENV])
    assert status.text.strip() == "200", answer.text
    assert '"model_version": "1"' in answer.text and '"predictions"' in answer.text, answer.text

    # No request left the server: the page, its assets, the document, the call.
    urls = requested_urls(browser)
    assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for u in urls), urls
    assert any(u.endswith("/openapi.json") for u in urls), urls
    # (chrome:// URLs are the browser's own new-tab page, from its resources, before /docs.)
    network = [u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:"))]
    outside = [u for u in network if not u.startswith(f"{keyed_server.url}/")]
    assert not outside, outside
