"""A worker short of file descriptors refuses upgrades early instead of locking clients out.

``wsa-fast serve`` with its descriptor limit lowered (as ``ulimit -n`` would): ``max_connections`` is
lowered at start-up to leave headroom (docs/protocol.md "Limits"), so past it every upgrade is
answered HTTP 503 at once, clients already in carry on, and a client gets in as soon as one leaves.
"""

from __future__ import annotations

import asyncio
import re
import resource
import socket
import time
import urllib.request

import pytest
from gateway_process import GatewayProcess
from test_overload import login, ping
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from wsa_ws import aio

FD_LIMIT = 160
BUDGET_LINE = re.compile(r"max_connections is (\d+) per worker: this process may open only (\d+) files")


def lower_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def open_connections(gateway: GatewayProcess) -> int:
    with urllib.request.urlopen(f"http://{gateway.host}:{gateway.port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(int(float(line.split()[-1])) for line in text.splitlines() if line.startswith("wsa_connections{"))


def wait_for_connections(gateway: GatewayProcess, count: int) -> None:
    """Until the server has seen the closes (a barrier: the gauge moves when it handles them)."""
    while (now := open_connections(gateway)) != count:
        assert now > count, now
        time.sleep(0.02)


def test_past_the_descriptor_budget_upgrades_get_503_and_clients_carry_on() -> None:
    with GatewayProcess("--max-connections-per-ip", "0", preexec_fn=lower_fd_limit) as gateway:
        line = BUDGET_LINE.search(gateway.log)
        assert line is not None, gateway.log
        budget, limit = int(line.group(1)), int(line.group(2))
        assert limit == FD_LIMIT and 0 < budget <= FD_LIMIT - 64

        @aio
        async def run() -> None:
            clients = [await connect(gateway.url) for _ in range(budget)]
            await login(clients[0], "first")
            # More refusals than the headroom has descriptors: each refused socket gives its own back.
            for _ in range(2 * (FD_LIMIT - budget)):
                with pytest.raises(InvalidStatus) as refused:
                    await connect(gateway.url)
                assert refused.value.response.status_code == 503
            assert (await ping(clients[0], "first"))["payload"]["result"] == "success"
            await clients[-1].close()
            await asyncio.to_thread(wait_for_connections, gateway, budget - 1)
            clients[-1] = await connect(gateway.url)
            await login(clients[-1], "last")
            assert (await ping(clients[-1], "last"))["payload"]["result"] == "success"
            assert (await ping(clients[0], "first", "ping2"))["payload"]["result"] == "success"
            for ws in clients:
                await ws.close()

        run()
        assert "Too many open files" not in gateway.log


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (it reads EOF or a reset); it never sent anything on it."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_silent_connections_cannot_take_the_last_descriptors() -> None:
    """Sockets that never send their upgrade request would hold descriptors for the handshake timeout
    (10 s) and lock every client out; near the limit, each new connection closes the oldest of them."""
    with GatewayProcess("--max-connections-per-ip", "0", preexec_fn=lower_fd_limit) as gateway:
        silent = [socket.create_connection((gateway.host, gateway.port)) for _ in range(2 * FD_LIMIT)]
        try:

            @aio
            async def run() -> None:
                # Accepted after every silent socket (the kernel queues them in order): a client gets in.
                async with connect(gateway.url) as ws:
                    await login(ws, "honest")
                    assert (await ping(ws, "honest"))["payload"]["result"] == "success"

            run()
            # Those the honest client's answer came after were all accepted: each past the limit closed one.
            closed = sum(closed_by_server(sock) for sock in silent)
            assert closed >= 2 * FD_LIMIT - FD_LIMIT, closed
            assert closed < 2 * FD_LIMIT, "the newest silent sockets keep their place"
        finally:
            for sock in silent:
                sock.close()
        assert gateway.wait_for_log("ran short of file descriptors"), gateway.log[-2000:]
        assert "Too many open files" not in gateway.log
