"""Headless Chromium for the tests that drive the page at / (tests/test_page.py), through
Selenium and Debian's chromium-driver, offline.

Without Chromium (or Selenium) those tests are skipped, except in CI (CI=true, as CI services set
it, or BGREMOVE_REQUIRE_BROWSER=1): there they fail, so a broken set-up cannot pass unnoticed.
`.ci/run` installs Debian's `chromium` and `chromium-driver` where they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# The flags that keep Chromium to loopback: no background fetches (updates, sync, safe browsing
# lists), no QUIC, and every connection but to 127.0.0.1 sent to a dead proxy, so a request to
# another origin fails instead of leaving the machine.
OFFLINE_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
)

# Injected before any of the page's own script (DevTools, so no CSP applies to it): it records
# every alert/confirm/prompt and every Content-Security-Policy violation, so that a test can tell
# that no injected markup ran, and that nothing even tried.
WATCH = """
window.__seen = {dialogs: [], violations: []};
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = (...args) => { window.__seen.dialogs.push([name, String(args[0])]); };
}
document.addEventListener("securitypolicyviolation", (event) => {
  window.__seen.violations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def required() -> bool:
    return (os.environ.get("CI", "").lower() in ("1", "true", "yes")
            or os.environ.get("BGREMOVE_REQUIRE_BROWSER") == "1")


def find() -> tuple[str, str] | None:
    """Chromium and its driver: on PATH, else where Debian puts them."""
    browser = (shutil.which("chromium") or shutil.which("chromium-browser")
               or next((p for p in ("/usr/bin/chromium",) if os.path.exists(p)), None))
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
    return (browser, driver) if browser and driver else None


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install --group dev)"
    if find() is None:
        return ("Chromium and its driver are not installed (apt-get install chromium "
                "chromium-driver)")
    return None


def skip_or_fail() -> None:
    reason = unavailable()
    if reason is None:
        return
    if required():
        pytest.fail(f"the browser tests must run in CI, but {reason}")
    pytest.skip(f"the page's browser tests need a browser: {reason}")


@dataclass
class Traffic:
    """What the browser asked for, read from its performance log (which each read drains)."""

    requests: list[str] = field(default_factory=list)
    responses: list[tuple[str, int]] = field(default_factory=list)

    def read(self, driver: Any) -> Traffic:
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(params["request"]["url"])
            elif message.get("method") == "Network.responseReceived":
                self.responses.append((params["response"]["url"], params["response"]["status"]))
        return self

    def clear(self, driver: Any) -> None:
        self.read(driver)
        self.requests.clear()
        self.responses.clear()


@contextmanager
def chromium(profile: Path, downloads: Path) -> Iterator[Any]:
    """A headless Chromium with a fresh profile, saving downloads into `downloads`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find()
    assert found is not None
    binary, driver_path = found
    # Selenium Manager would otherwise try to download a driver matching the browser.
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*OFFLINE_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
        # Several downloads from one page (each cut-out, then the zip) without a prompt.
        "profile.default_content_setting_values.automatic_downloads": 1,
    })
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(downloads)})
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})
        yield driver
    finally:
        driver.quit()
