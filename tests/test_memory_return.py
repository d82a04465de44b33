"""Memory that closed (or quiet) connections held goes back to the operating system.

A real ``wsa-fast serve``; 2,000 connections log in (``wsa-fast bench --scenario connect``, in
another process), hold, and close. Once they are gone, the server's RSS must fall back by at
least half of what they took: glibc keeps freed heap pages unless asked (RSS used to stay at
the peak), so the gateway trims its heap at a quiet moment after a burst of closes.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from gateway_process import GatewayProcess

# 2,000 connections from the load tester, several seconds: not inner-loop material.
pytestmark = pytest.mark.slow

WSA_FAST = str(Path(sys.executable).with_name("wsa-fast"))
CONNECTIONS = 2000


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_connections(gateway: GatewayProcess) -> int:
    with urllib.request.urlopen(f"http://{gateway.host}:{gateway.port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(int(float(line.split()[-1])) for line in text.splitlines() if line.startswith("wsa_connections{"))


def wait_until(condition, what: str, deadline_s: float = 120.0) -> None:
    """Poll ``condition`` (a barrier on the server's state); the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def hold(gateway: GatewayProcess, count: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [
            WSA_FAST,
            "bench",
            gateway.url,
            "--scenario",
            "connect",
            "--clients",
            str(count),
            "--duration",
            str(seconds),
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
    )


def test_rss_falls_back_once_connections_close() -> None:
    with GatewayProcess("--limits", "off", "--max-connections-per-ip", "0") as gateway:
        pid = gateway.proc.pid
        # A first round loads what the first connections load once (modules, caches).
        warmup = hold(gateway, 200, 0.1)
        assert warmup.wait(120) == 0
        wait_until(lambda: open_connections(gateway) == 0, "the warm-up connections never closed")
        base = rss_bytes(pid)

        load = hold(gateway, CONNECTIONS, 600)
        try:
            wait_until(lambda: open_connections(gateway) == CONNECTIONS, "the connections never all logged in")
            held = rss_bytes(pid)
        finally:
            load.terminate()
            load.wait(60)
        assert held - base > CONNECTIONS * 1024, (base, held)  # the connections did take memory
        wait_until(lambda: open_connections(gateway) == 0, "the server never saw the connections close")
        wait_until(
            lambda: rss_bytes(pid) - base <= (held - base) / 2,
            f"RSS stayed up: {base} before, {held} with {CONNECTIONS} connections, {rss_bytes(pid)} after",
        )


def test_rss_falls_once_open_connections_go_quiet() -> None:
    """Logged-in connections that stay open but silent: their read buffers are freed and the heap given back."""
    with GatewayProcess("--limits", "off", "--max-connections-per-ip", "0") as gateway:
        pid = gateway.proc.pid
        load = hold(gateway, CONNECTIONS, 600)
        try:
            wait_until(lambda: open_connections(gateway) == CONNECTIONS, "the connections never all logged in")
            held = rss_bytes(pid)
            # Each has a 2 KiB read buffer from its login; at least a quarter of that must go back.
            wait_until(
                lambda: held - rss_bytes(pid) >= CONNECTIONS * 512,
                f"RSS stayed up: {held} with {CONNECTIONS} connections logged in, {rss_bytes(pid)} once quiet",
            )
            assert open_connections(gateway) == CONNECTIONS
        finally:
            load.terminate()
            load.wait(60)
