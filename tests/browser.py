"""A real headless Chromium for the tests: Debian's ``chromium`` driven by Playwright.

The ``browser`` fixture (one per test module) is a Playwright ``Browser``; a test opens pages
with ``browser.new_page()`` and closes them itself. Chromium is Debian's package, installed with
apt-get when missing (as the nginx test installs nginx); Playwright only drives it through
``executable_path``, so no browser build is downloaded. When Chromium cannot be installed the
tests fail rather than skip: what a browser sees would go untested.

Playwright's sync API runs its own event loop: use it from plain (non-async) tests. That loop
is set as the main thread's running loop until Playwright stops, so the fixture stops it with
each module: a session-wide one made every later ``asyncio.run`` test fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

# apt-get may download and unpack a hundred packages for Chromium; the whole install is bounded.
INSTALL_TIMEOUT = 900.0
CANDIDATES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def install_chromium() -> str:
    """Debian's chromium, installed when missing; the path of its launcher."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("chromium is missing and cannot be installed here (needs root and apt-get)", pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", "chromium"]
    for command in (["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-q"], install):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        if done.returncode != 0 and command is install:
            pytest.fail(f"apt-get could not install chromium:\n{done.stderr[-2000:]}", pytrace=False)
    found = find_chromium()
    if not found:
        pytest.fail("apt-get installed chromium but no chromium command is on PATH", pytrace=False)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless Chromium (Playwright ``Browser``), closed when the session ends."""
    from playwright.sync_api import sync_playwright

    executable = install_chromium()
    with sync_playwright() as playwright:
        # Root cannot use Chromium's sandbox; the pages are our own test pages on loopback.
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()
