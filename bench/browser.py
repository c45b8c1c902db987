"""Headless Chromium for the dashboard: Debian's `chromium` driven through its `chromedriver` by
selenium, with the options both the browser tests (tests/integration/ui) and the `dashboard` bench
scenario use, so what is measured is what is tested.

selenium is imported here only (a dev dependency): importing this module is what needs it.
"""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = "1280,900"
INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver"


def missing() -> list[str]:
    """The browser's files that are not installed (empty when it can start)."""
    return [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]


def chrome_options() -> webdriver.ChromeOptions:
    """Headless, no sandbox (containers run as root), /tmp instead of a small /dev/shm, a fixed
    window, and the console kept so a caller can read the page's errors."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WINDOW}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


def start_chrome() -> Chrome:
    """A headless Chromium; an explicit driver path, so selenium's own manager (which would
    download one) never runs."""
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=chrome_options())
