"""Errors a user makes starting ``wsa-fast serve``: one clear line, no traceback, exit 2.

Each case runs the command as a user would and checks its whole output: the one
``wsa-fast: error:`` line says what is wrong, nothing else is above INFO but the
dev-auth warning, and no traceback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import uvloop
from gateway_process import ROOT, WSA_FAST

from wsa_fast.nats_client import NatsClient, NatsError, parse_servers

EXIT_USAGE = 2
START_TIMEOUT = 60


def run(*args: str) -> tuple[int, str]:
    done = subprocess.run(
        [WSA_FAST, "serve", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=START_TIMEOUT,
    )
    return done.returncode, done.stdout


def assert_one_error_line(output: str, words: str) -> None:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "error" in line.lower() and "WARNING wsa_fast.cli" not in line]
    assert len(errors) == 1, output
    assert errors[0].startswith("wsa-fast: error: ") and words in errors[0], output


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on (without SO_REUSEPORT, as most do)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: NATS there is never reachable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use(busy_port, workers):
    code, output = run("--port", str(busy_port), "--workers", workers)
    assert code == EXIT_USAGE, output
    assert_one_error_line(output, f"cannot listen on 127.0.0.1:{busy_port}: address already in use")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_host_that_does_not_resolve(workers):
    code, output = run("--host", "no-such-host.invalid", "--auth", "dev", "--workers", workers)
    assert code == EXIT_USAGE, output
    assert_one_error_line(output, "cannot listen on 'no-such-host.invalid': the host name does not resolve")


def test_an_app_that_is_not_an_app():
    code, output = run("--app", "tests.apps.echo_app:Context")
    assert code == EXIT_USAGE, output
    assert_one_error_line(output, "app 'tests.apps.echo_app:Context' is not a wsa_fast.App (it is a 'type')")


def test_a_nats_server_named_without_port_or_scheme():
    code, output = run("--nats", "foo")
    assert code == EXIT_USAGE, output
    assert_one_error_line(output, "'foo': give nats://HOST[:PORT], tls://HOST[:PORT] or HOST:PORT")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_while_waiting_for_nats(closed_port, workers):
    """Ctrl-C reaches the whole foreground process group, supervisor and workers alike."""
    proc = subprocess.Popen(
        [WSA_FAST, "serve", "--port", "0", "--nats", f"127.0.0.1:{closed_port}", "--workers", workers],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = []
        while "connecting to NATS" not in (line := proc.stdout.readline()):
            assert line, "".join(lines)
            lines.append(line)
        os.killpg(proc.pid, signal.SIGINT)
        output = "".join(lines) + proc.stdout.read()
        assert proc.wait(START_TIMEOUT) == EXIT_USAGE, output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    assert_one_error_line(output, "interrupted while starting")


# Enough loop steps to cover a whole first attempt at an unreachable server: connect, refusal, retry wait.
CANCEL_STEPS = 12


@pytest.mark.skipif(sys.version_info < (3, 11), reason="no asyncio.Runner: Ctrl-C is a KeyboardInterrupt, not a cancel")
def test_a_cancel_at_any_step_of_connecting_to_nats_ends_the_wait(closed_port):
    """Ctrl-C cancels the main task (asyncio.Runner): at whatever loop step it lands, connect() ends cancelled.

    On Python <= 3.11, asyncio.wait_for turned a cancellation arriving as the connection attempt failed into
    that failure, which connect() retried until its deadline: the Ctrl-C was lost.
    """

    async def cancel_after(steps: int) -> str:
        client = NatsClient(parse_servers(f"127.0.0.1:{closed_port}"), "test")
        attempt = asyncio.get_running_loop().create_task(client.connect(5.0))
        for _ in range(steps):
            await asyncio.sleep(0)
        attempt.cancel()
        try:
            await attempt
        except asyncio.CancelledError:
            return "cancelled"
        except NatsError as error:
            return f"gave up: {error}"
        return "connected"

    outcomes = {steps: uvloop.run(cancel_after(steps)) for steps in range(CANCEL_STEPS)}
    assert outcomes == dict.fromkeys(range(CANCEL_STEPS), "cancelled")
