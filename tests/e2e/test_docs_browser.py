"""The docs page in a real headless browser (Debian's chromium, driven by Selenium through
chromedriver): it shows every operation of /openapi.json, loads nothing from elsewhere, and sends
a request from the page ("Try it out") that registers a user.

Skipped, saying so, where chromium or chromedriver is not installed; CI installs both.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.fixtures.processes import System

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Flags for a headless run on a machine without a display, a GPU or outside network.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=1280,2000",
)
PAGE_TIMEOUT = 30


@pytest.fixture
def browser() -> Iterator[Any]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed: `apt-get install -y chromium "
            "chromium-driver` (Debian) to run the docs page in a real browser"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def operations(system: System) -> set[tuple[str, str]]:
    document = system.http.get("/openapi.json").json()
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def test_the_docs_page_shows_every_operation_and_sends_a_request(
    browser: Any, system: System, unique: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, PAGE_TIMEOUT)
    browser.get(f"{system.base_url}/docs")
    wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    listed = {
        (
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
            block.find_element(By.CSS_SELECTOR, "[data-path]").get_attribute("data-path"),
        )
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")
    }
    assert listed == operations(system)

    # Try it out: POST /users from the page.
    username = f"browser-{unique}"
    post = browser.find_element(By.ID, "operations-users-createUser")
    post.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(
        shown.element_to_be_clickable(
            (By.CSS_SELECTOR, "#operations-users-createUser .try-out__btn")
        )
    ).click()
    body = wait.until(
        shown.visibility_of_element_located(
            (By.CSS_SELECTOR, "#operations-users-createUser textarea.body-param__text")
        )
    )
    body.clear()
    body.send_keys(orjson.dumps({"username": username, "fullName": "From The Page"}).decode())
    post.find_element(By.CSS_SELECTOR, ".execute").click()
    status = wait.until(
        shown.visibility_of_element_located(
            (
                By.CSS_SELECTOR,
                "#operations-users-createUser .live-responses-table tbody .response-col_status",
            )
        )
    )
    assert status.text.strip().startswith("201")
    answer = post.find_element(
        By.CSS_SELECTOR, "#operations-users-createUser .live-responses-table .microlight"
    ).text
    position = orjson.loads(answer)["commitPosition"]
    read = system.http.get(f"/users/{username}", headers={"X-Min-Position": str(position)})
    assert read.status_code == 200
    assert read.json()["fullName"] == "From The Page"

    problems = [
        entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
    ]
    assert problems == []
