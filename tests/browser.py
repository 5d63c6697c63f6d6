"""A headless Chromium for tests (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium).

:func:`browser` yields a Selenium driver, or skips the test with the reason when no browser can be
had here. ``offline=True`` blocks every network request except to 127.0.0.1 (an unreachable
proxy for http(s), and every host name resolving to nothing), so a page that needs the internet
shows it.
"""

from __future__ import annotations

import contextlib
import shutil

import pytest


def _find(*names: str) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


@contextlib.contextmanager
def browser(offline: bool = True, width: int = 1280, height: int = 1000):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium; .ci/run installs it)")
    binary = _find("chromium", "chromium-browser", "google-chrome")
    driver_path = _find("chromedriver", "chromium-driver")
    if binary is None or driver_path is None:
        pytest.skip("no headless Chromium here (Debian: apt-get install chromium chromium-driver; .ci/run does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--allow-file-access-from-files",
    ):
        options.add_argument(arg)
    if offline:
        options.add_argument("--proxy-server=http://127.0.0.1:9")  # nothing listens there
        options.add_argument("--proxy-bypass-list=127.0.0.1;localhost")
        options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def images_loaded(driver) -> list[dict]:
    """``[{"src", "width", "height", "complete"}]`` of every ``<img>`` on the current page."""
    return driver.execute_script(
        "return Array.from(document.images).map(i => ({src: i.src, width: i.naturalWidth, height: i.naturalHeight,"
        " complete: i.complete}));"
    )
