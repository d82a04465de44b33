"""``wsa-fast serve --workers N``: N worker processes on one port, kept running.

The supervisor starts the embedded nats-server (unless ``--nats`` names one), forks the
workers (each its own uvloop loop and picows server on the shared port, SO_REUSEPORT),
announces ``listening on`` once every worker serves, restarts a worker that dies with
an exponential backoff, passes SIGHUP on to the workers (they re-read the TLS certificate),
and on SIGTERM/SIGINT has every worker drain, then exits 0.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import Any

from .config import ConfigError, Settings
from .embedded_nats import EmbeddedNats
from .metrics import MetricsBlock
from .nats_client import parse_servers
from .process import describe_exit, die_with_parent

__all__ = ["supervise"]

log = logging.getLogger("wsa_fast.supervisor")

START_TIMEOUT = 60.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# A worker that ran this long before dying starts its backoff over.
STABLE_AFTER = 30.0
# Beyond drain_timeout, how long stopping workers get before SIGKILL.
STOP_GRACE = 10.0
EXIT_FAILED = 1
# A worker's start-up error (the CLI's exit status for bad usage): the supervisor stops with it too.
EXIT_USAGE = 2


def supervise(settings: Settings, app: Any = None) -> int:
    embedded = None
    reserved: list[socket.socket] = []
    try:
        # Bind before anything starts: a port in use or a host that does not resolve is one line, exit 2.
        # Port 0 is picked here once for every worker; the socket holds it (bound, never listening) meanwhile.
        reserved.append(_reserve(settings.host, settings.port))
        settings = dataclasses.replace(settings, port=reserved[0].getsockname()[1])
        if settings.nats is None:
            embedded = EmbeddedNats(settings.max_message_size)
            settings = dataclasses.replace(settings, nats=embedded.url)
        if settings.admin_port is not None:
            reserved.append(_reserve(settings.admin_host, settings.admin_port))
            settings = dataclasses.replace(settings, admin_port=reserved[-1].getsockname()[1])
        return Supervisor(settings, app, embedded).run()
    finally:
        for sock in reserved:
            sock.close()
        if embedded is not None:
            embedded.stop()


def _reserve(host: str, port: int) -> socket.socket:
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(address[0], socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address[4])
        except OSError:
            sock.close()
            raise
        return sock
    except OSError as error:
        from .server import listen_error

        raise listen_error(host, port, error) from None


class Worker:
    __slots__ = ("index", "pid", "started", "ready", "failures", "restart_at")

    def __init__(self, index: int) -> None:
        self.index = index
        self.pid = 0
        self.started = 0.0
        self.ready = False
        self.failures = 0
        self.restart_at: float | None = None


class Supervisor:
    def __init__(self, settings: Settings, app: Any, embedded: EmbeddedNats | None = None) -> None:
        self.settings = settings
        self.app = app
        self.embedded = embedded
        self.workers = [Worker(i) for i in range(1, settings.workers + 1)]
        # Shared with every worker forked from here: any of them answers /metrics for the node.
        self.metrics = MetricsBlock(settings.workers, app)
        self.stopping = False
        self.announced = False
        self.exit_code = EXIT_FAILED  # if a worker dies while starting
        self.ready_r, self.ready_w = os.pipe()
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.ready_r, self.wake_r, self.wake_w):
            os.set_blocking(fd, False)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGHUP, self._on_hangup)
        signal.set_wakeup_fd(self.wake_w)
        selector = selectors.DefaultSelector()
        selector.register(self.ready_r, selectors.EVENT_READ)
        selector.register(self.wake_r, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT
        for worker in self.workers:
            self._spawn(worker)
        while not self.stopping:
            selector.select(self._timeout())
            self._drain(self.wake_r)
            self._read_ready()
            if not self._reap():
                self.stopping = True
                return self._stop(self.exit_code)
            self._restart_due()
            if self.embedded is not None:
                try:
                    self.embedded.restart_if_dead()
                except RuntimeError as error:
                    log.error("%s", error)  # tried again on the next round
            if not self.announced and time.monotonic() > deadline:
                log.error("the workers did not all start within %gs", START_TIMEOUT)
                return self._stop(EXIT_FAILED)
        if not self.announced:
            # Stopped before serving (Ctrl-C while the workers wait for NATS): as the CLI says it for one worker.
            print("wsa-fast: error: interrupted while starting", file=sys.stderr)
            return self._stop(EXIT_USAGE)
        return self._stop(0)

    def _on_stop(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            log.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.workers))
        self.stopping = True

    def _on_hangup(self, signum: int, frame: Any) -> None:
        for worker in self.workers:
            if worker.pid:
                _signal(worker.pid, signal.SIGHUP)

    def _timeout(self) -> float:
        due = [w.restart_at for w in self.workers if w.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else 1.0

    def _spawn(self, worker: Worker) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(worker.index)
        worker.pid, worker.started, worker.ready, worker.restart_at = pid, time.monotonic(), False, None

    def _child(self, index: int) -> None:
        """In the forked worker: never returns."""
        code = EXIT_FAILED
        try:
            die_with_parent()
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            # Until the server handles it: a worker still starting reads the new certificate anyway.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            for fd in (self.ready_r, self.wake_r, self.wake_w):
                os.close(fd)
            from .server import run

            code = run(
                self.settings,
                self.app,
                worker=index,
                metrics=self.metrics,
                on_ready=lambda port: self._tell_ready(index),
            )
        except ConfigError as error:
            print(f"wsa-fast: error: worker {index}: {error}", file=sys.stderr)
            code = EXIT_USAGE
        except KeyboardInterrupt:
            code = EXIT_FAILED  # Ctrl-C reached the whole process group: the supervisor says it
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _tell_ready(self, index: int) -> None:
        os.write(self.ready_w, b"%d\n" % index)

    def _read_ready(self) -> None:
        try:
            data = os.read(self.ready_r, 4096)
        except BlockingIOError:
            return
        for line in data.split():
            self.workers[int(line) - 1].ready = True
        if not self.announced and all(w.ready for w in self.workers):
            self.announced = True
            # Server addresses only: a NATS URL may carry a password.
            assert self.settings.nats is not None  # supervise() starts an embedded server when none is given
            nats = ", ".join(map(repr, parse_servers(self.settings.nats)))
            if self.settings.admin_port is not None:
                log.info("admin endpoints on http://%s:%d", self.settings.admin_host, self.settings.admin_port)
            log.info(
                "listening on %s://%s:%d (%d workers, NATS %s)",
                self.settings.scheme,
                self.settings.host,
                self.settings.port,
                len(self.workers),
                nats,
            )

    def _reap(self) -> bool:
        """Collect dead workers and plan their restart; False if one died before all ever started."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is None:
                if self.embedded is not None:
                    self.embedded.reaped(pid, status)
                continue
            worker.pid = 0
            if self.stopping:
                continue
            why = _describe(status)
            if not self.announced:
                if os.waitstatus_to_exitcode(status) == EXIT_USAGE:
                    self.exit_code = EXIT_USAGE  # it said why in one line
                else:
                    log.error("worker %d %s while starting", worker.index, why)
                return False
            lived = time.monotonic() - worker.started
            worker.failures = 0 if lived > STABLE_AFTER else worker.failures + 1
            delay = min(FIRST_BACKOFF * 2 ** (worker.failures - 1), MAX_BACKOFF) if worker.failures else 0.0
            worker.restart_at = time.monotonic() + delay
            log.warning(
                "worker %d (pid %d) %s after %.1fs; restarting it in %.1fs", worker.index, pid, why, lived, delay
            )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.restart_at is not None and worker.restart_at <= now:
                self._spawn(worker)
                log.info("worker %d restarted (pid %d)", worker.index, worker.pid)

    def _stop(self, code: int) -> int:
        """Have every worker drain (SIGTERM), wait for them, SIGKILL stragglers."""
        for worker in self.workers:
            if worker.pid:
                _signal(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout + STOP_GRACE
        while any(w.pid for w in self.workers) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        for worker in self.workers:
            if worker.pid:
                log.error("worker %d (pid %d) did not stop; killing it", worker.index, worker.pid)
                _signal(worker.pid, signal.SIGKILL)
                os.waitpid(worker.pid, 0)
        log.info("stopped")
        return code

    @staticmethod
    def _drain(fd: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe(status: int) -> str:
    return describe_exit(os.waitstatus_to_exitcode(status))
