"""A real gateway process for the tests: the installed ``wsa-fast serve`` on a free port.

``GatewayProcess(*args)`` starts ``wsa-fast serve --port 0 ARGS`` exactly as a user runs it
(the console script installed beside this Python; ``make test`` installs it there), waits for
its ``listening on ws://HOST:PORT`` (or ``wss://``) line and collects everything it writes. ``stop()`` (or the
end of a ``with`` block) sends SIGTERM, then SIGKILL, and fails the test if the log holds a
traceback, unless ``allow_tracebacks`` was given, or a sanitizer report.

Used by the fixtures in ``conftest.py`` and by ``wsa_ws.running_server``.
"""

from __future__ import annotations

import os
import re
import signal as signals
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The installed command, exactly as a user starts it.
WSA_FAST = str(Path(sys.executable).with_name("wsa-fast"))
LISTENING = re.compile(r"listening on (wss?)://([^\s:]+|\[[^\]]+\]):(\d+)")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
TRACEBACK = "Traceback (most recent call last)"
# What AddressSanitizer and UndefinedBehaviorSanitizer print (make sanitize): GCC's UBSan writes to
# stderr whatever its log_path says, so a report is looked for here as well.
SANITIZER_REPORT = re.compile(r"runtime error: |ERROR: AddressSanitizer")


class GatewayProcess:
    """A running ``wsa-fast serve``.

    ``.url`` (``ws://HOST:PORT``), ``.url_for(path, **query)``, ``.host``, ``.port``, ``.proc``,
    ``.log`` (everything written so far, stdout and stderr), ``.wait_for_log(text)``,
    ``.signal(signum)``, ``.wait(timeout)``, ``.stop()``. ``preexec_fn`` runs in the child before
    ``wsa-fast`` starts (e.g. to lower its file descriptor limit).
    """

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        allow_tracebacks: bool = False,
        start_timeout: float = START_TIMEOUT,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        args = tuple(str(a) for a in args)
        has_port = any(a == "--port" or a.startswith("--port=") for a in args)
        self.args = list(args) if has_port else ["--port", "0", *args]
        self.command = [WSA_FAST, "serve", *self.args]
        self.allow_tracebacks = allow_tracebacks
        self.scheme = "ws"
        self.host = "127.0.0.1"
        self.port = 0
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._started = threading.Event()
        self.proc = subprocess.Popen(
            self.command,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._started.wait(start_timeout) or not self.port:
            self.stop(check=False)
            raise RuntimeError(f"the gateway did not start ({' '.join(self.command)}); output:\n{self.log}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            with self._lock:
                self._lines.append(line)
            if not self.port:
                match = LISTENING.search(line)
                if match:
                    self.scheme, self.host, self.port = match.group(1), match.group(2), int(match.group(3))
                    self._started.set()
        self._started.set()  # exited: wake a waiting start

    # -- where it listens

    @property
    def url(self) -> str:
        """``ws://HOST:PORT``, or ``wss://`` when the gateway serves TLS."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def url_for(self, path: str = "/", **query: str) -> str:
        """``ws[s]://HOST:PORT/PATH?QUERY``."""
        url = f"{self.url}{path}"
        return f"{url}?{urlencode(query)}" if query else url

    # -- what it wrote

    @property
    def log(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        with self._lock:
            return "".join(self._lines)

    def wait_for_log(self, text: str, timeout: float = 5.0, count: int = 1) -> bool:
        """Wait until ``text`` appears in the log (``count`` times: one line per worker, say)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.count(text) >= count:
                return True
            time.sleep(0.02)
        return self.log.count(text) >= count

    # -- stopping

    def signal(self, signum: int = signals.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to exit (and its output to be read); returns its exit code."""
        code = self.proc.wait(timeout)
        self._reader.join(2)
        return code

    def stop(self, check: bool = True) -> None:
        """SIGTERM (graceful drain), then SIGKILL; with ``check``, fail on a traceback in the log
        unless ``allow_tracebacks``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signals.SIGINT if os.name == "nt" else signals.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        if check and SANITIZER_REPORT.search(self.log):
            pytest.fail(f"the gateway wrote a sanitizer report:\n{self.log}", pytrace=False)
        if check and not self.allow_tracebacks and TRACEBACK in self.log:
            pytest.fail(f"the gateway wrote a traceback:\n{self.log}", pytrace=False)

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
