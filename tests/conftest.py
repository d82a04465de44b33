"""Shared fixtures: real gateway processes (``wsa-fast serve``) on free ports.

``start_gateway(*args, app=None, env=None)`` starts one with extra CLI flags and stops it
when the test ends; ``gateway`` is one default gateway shared by a test module. Either
fails the test when the server wrote a traceback.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
# The installed command, exactly as a user starts it (make test installs it beside this Python).
WSA_FAST = str(Path(sys.executable).with_name("wsa-fast"))
LISTENING = re.compile(r"listening on ws://([^\s:]+|\[[^\]]+\]):(\d+)")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


class GatewayProcess:
    """A running ``wsa-fast serve``: ``.url``, ``.port``, ``.proc``, ``.log()``."""

    def __init__(self, args: list[str], env: Optional[dict[str, str]] = None, cwd: Path = REPO) -> None:
        self.args = ["--port", "0", *args] if "--port" not in args else list(args)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [WSA_FAST, "serve", *self.args],
            cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._started = threading.Event()
        self.host = "127.0.0.1"
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._started.wait(START_TIMEOUT) or not self.port:
            self.stop(check=False)
            raise RuntimeError(f"gateway did not start (args {self.args}); output:\n{self.log()}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            with self._lock:
                self._lines.append(line)
            if not self.port:
                match = LISTENING.search(line)
                if match:
                    self.host, self.port = match.group(1), int(match.group(2))
                    self._started.set()
        self._started.set()        # exited: wake a waiting start

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def log(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        with self._lock:
            return "".join(self._lines)

    def wait_for_log(self, text: str, timeout: float = 5.0) -> bool:
        """Wait until ``text`` appears in the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            time.sleep(0.02)
        return text in self.log()

    def stop(self, check: bool = True) -> None:
        """SIGTERM (graceful drain), then SIGKILL; with ``check``, fail on a traceback in the log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if os.name == "nt" else signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        if check and "Traceback (most recent call last)" in self.log():
            pytest.fail(f"the gateway wrote a traceback:\n{self.log()}", pytrace=False)


StartGateway = Callable[..., GatewayProcess]


def _launcher(started: list[GatewayProcess]) -> StartGateway:
    def start(*args: str, app: Optional[str] = None, env: Optional[dict[str, str]] = None) -> GatewayProcess:
        argv = list(args)
        if app is not None:
            argv += ["--app", app]
        gateway = GatewayProcess(argv, env)
        started.append(gateway)
        return gateway

    return start


def _stop_all(started: list[GatewayProcess]) -> None:
    failures = []
    for gateway in started:
        try:
            gateway.stop()
        except pytest.fail.Exception as exc:
            failures.append(str(exc))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.fixture
def start_gateway() -> Iterator[StartGateway]:
    """Factory: ``start_gateway("--request-timeout", "0.5", app="tests.apps.echo_app:app")``."""
    started: list[GatewayProcess] = []
    yield _launcher(started)
    _stop_all(started)


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    """A gateway with default settings, shared by the tests of one module."""
    started: list[GatewayProcess] = []
    _launcher(started)()
    yield started[0]
    _stop_all(started)
