"""The browse page in a real headless Chromium: load a listing, upload through the form."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]

SCREENSHOT_DIR = Path(os.environ.get("ARTIFACTD_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    assert chromium and chromedriver, "make test installs chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,800",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_listing_loads_and_form_upload_appears_in_it(
    browser: webdriver.Chrome, server: ServerProcess, storage_root: Path, tmp_path: Path
) -> None:
    (storage_root / "builds").mkdir()
    (storage_root / "builds" / "existing <b>.txt").write_text("already here")
    browser.get(server.files_url("builds/"))
    assert "Index of /files/builds/" in browser.title
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "tbody td:first-child a")]
    assert names == ["../", "existing <b>.txt"]  # shown as text, not as markup

    upload = tmp_path / "from-browser.log"
    upload.write_text("uploaded through the form\n")
    browser.find_element(By.CSS_SELECTOR, "input[name=ttl]").send_keys("1h")
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(upload))
    browser.find_element(By.CSS_SELECTOR, "#upload button[type=submit]").click()

    def uploaded_row(driver: webdriver.Chrome) -> str | None:
        rows = driver.find_elements(By.XPATH, "//tr[td/a[text()='from-browser.log']]")
        return rows[0].text if rows else None

    # The page replaces the listing once the upload is done: an element found just before
    # may be gone when read, which chromedriver reports as a stale element or, under load,
    # as an "unhandled inspector error" (a plain WebDriverException). Look again then.
    row_text = WebDriverWait(
        browser, 20, ignored_exceptions=[StaleElementReferenceException, WebDriverException]
    ).until(uploaded_row)
    assert (storage_root / "builds" / "from-browser.log").read_text() == (
        "uploaded through the form\n"
    )
    assert row_text is not None
    assert "never" not in row_text  # the ttl field gave it an expiry
    assert "curl -fO" in row_text

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT_DIR / "browse-page.png"))
