"""Tools the tests run (nginx, promtool) installed from Debian's packages when missing.

A test that needs a tool fails, never skips, when it cannot be installed: what it checks would
otherwise go untested. apt-get waits for a dpkg lock held by another installer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

# apt-get may download and unpack a few packages; the whole install is bounded by this.
INSTALL_TIMEOUT = 600.0
APT_OPTIONS = ("-o", "DPkg::Lock::Timeout=600")


def find_binary(name: str, *elsewhere: str) -> str | None:
    """``name`` on PATH, else the first executable of ``elsewhere``."""
    found = shutil.which(name)
    if found:
        return found
    return next((path for path in elsewhere if os.access(path, os.X_OK)), None)


def _apt_get(*args: str, deadline: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *APT_OPTIONS, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=max(1.0, deadline - time.monotonic()),
    )


def install(what: str, packages: tuple[str, ...], find: Callable[[], str | None]) -> str:
    """Install the first of ``packages`` that gives ``find()`` a path; fails the test with apt-get's
    own words if none can be."""
    if shutil.which("apt-get") is None:
        pytest.fail(
            f"{what} is not installed and there is no apt-get to install it: install {' or '.join(packages)}",
            pytrace=False,
        )
    started = time.monotonic()
    deadline = started + INSTALL_TIMEOUT
    tried = []
    try:
        # The package lists may be stale or absent: update once, only when an install fails.
        for update_first in (False, True):
            if update_first:
                result = _apt_get("update", deadline=deadline)
                tried.append(("apt-get update", result))
            for package in packages:
                result = _apt_get("install", "-y", "--no-install-recommends", package, deadline=deadline)
                tried.append((f"apt-get install {package}", result))
                found = find()
                if result.returncode == 0 and found:
                    print(f"installed {package} in {time.monotonic() - started:.1f}s", file=sys.stderr)
                    return found
    except subprocess.TimeoutExpired:
        tried.append((f"(gave up after {INSTALL_TIMEOUT:.0f}s)", None))
    report = "\n".join(
        f"$ {command}" + ("" if result is None else f" -> exit {result.returncode}\n{(result.stderr or '')[-800:]}")
        for command, result in tried
    )
    pytest.fail(f"{what} is missing and could not be installed with apt-get:\n{report}", pytrace=False)
