"""The operator's surface: /readyz, the admin port, JSON logs, and the Origin check.

/readyz is watched flipping where a load balancer would see it: during a drain (held open
by a relayed request nobody answers) and while the NATS server is down and back.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest
from gateway_process import WSA_FAST
from nats_server import NatsServer
from websockets.exceptions import InvalidStatus
from wsa_ws import Clients, aio, http_get, open_ws, uid

ADMIN = re.compile(r"admin endpoints on http://([^\s:]+):(\d+)")
# How long /readyz may take to follow NATS going away or coming back (NATS pings, reconnects).
NATS_PATIENCE = 30.0


def admin_of(server) -> SimpleNamespace:
    """Where the gateway said its admin endpoints are (host and port, as http_get wants them)."""
    match = ADMIN.search(server.log)
    assert match, server.log
    return SimpleNamespace(host=match.group(1), port=int(match.group(2)))


def status_of(where, path: str) -> int:
    return http_get(where, path)[0]


def wait_status(where, path: str, status: int, patience: float) -> None:
    """Poll ``path`` until it answers ``status`` (the barrier is the state change itself)."""
    deadline = time.monotonic() + patience
    while status_of(where, path) != status:
        assert time.monotonic() < deadline, f"{path} did not become {status} within {patience}s"
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_admin_port_takes_the_endpoints_off_the_public_port(start_gateway, workers):
    server = start_gateway("--workers", str(workers), "--admin-port", "0")
    admin = admin_of(server)
    assert admin.port != server.port
    assert http_get(admin, "/healthz") == (200, b"ok\n")
    assert http_get(admin, "/readyz") == (200, b"ready\n")
    status, body = http_get(admin, "/metrics")
    assert status == 200 and b"wsa_connections" in body
    assert status_of(admin, "/") == 404
    # The public port no longer answers them; it still upgrades WebSockets.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert status_of(server, path) != 200, path

    @aio
    async def still_serving():
        async with Clients(server) as cl:
            await (await cl.open(login=uid("adm"))).ping()

    still_serving()


def test_readyz_on_the_public_port_without_an_admin_port(start_gateway):
    server = start_gateway()
    assert http_get(server, "/readyz") == (200, b"ready\n")


def test_readyz_is_503_while_draining(start_gateway):
    server = start_gateway("--admin-port", "0", "--drain-timeout", "60")
    admin = admin_of(server)

    @aio
    async def scenario():
        async with Clients(server) as cl:
            a = await cl.open(login=uid("dra"))
            b = await cl.open(login=uid("drb"))
            request_id = await a.request(b.cid, "slow@v1/answer")  # in flight: the drain waits for it
            assert (await b.recv())["id"] == request_id
            assert await asyncio.to_thread(status_of, admin, "/readyz") == 200
            server.signal(signal.SIGTERM)
            assert await asyncio.to_thread(server.wait_for_log, "stopping: draining"), server.log
            assert await asyncio.to_thread(http_get, admin, "/readyz") == (503, b"draining\n")
            assert await asyncio.to_thread(status_of, admin, "/healthz") == 200  # alive, just not ready
            await b.respond(a.cid, request_id)
            assert (await a.recv())["id"] == request_id

    scenario()
    assert server.wait(30) == 0, server.log


def test_readyz_follows_the_nats_connection(start_gateway):
    with NatsServer() as nats:
        server = start_gateway("--nats", nats.url, "--admin-port", "0")
        admin = admin_of(server)
        assert status_of(admin, "/readyz") == 200
        nats.stop()
        wait_status(admin, "/readyz", 503, NATS_PATIENCE)
        assert http_get(admin, "/readyz")[1] == b"not connected to NATS\n"
        assert b"wsa_nats_connected 0\n" in http_get(admin, "/metrics")[1]
        nats.start()
        wait_status(admin, "/readyz", 200, NATS_PATIENCE)
        metrics = http_get(admin, "/metrics")[1]
        assert b"wsa_nats_connected 1\n" in metrics and b"wsa_nats_reconnects_total 1\n" in metrics, metrics


def test_json_log_format_writes_one_object_per_line_with_stable_keys(start_gateway):
    server = start_gateway("--log-format", "json", "--admin-port", "0")
    admin_of(server)

    @aio
    async def traffic():
        async with Clients(server) as cl:
            await (await cl.open(login=uid("json"))).ping()

    traffic()
    server.stop()
    lines = server.log.splitlines()
    assert len(lines) >= 3, server.log
    for line in lines:
        record = json.loads(line)
        assert set(record) == {"time", "level", "logger", "pid", "message"}, line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), line
    messages = [json.loads(line)["message"] for line in lines]
    assert any(m.startswith("listening on ws://") for m in messages), messages
    assert any(m == "stopped" for m in messages), messages


# ---------------------------------------------------------------- Origin


@aio
async def test_an_origin_not_listed_gets_403_and_a_listed_one_connects(start_gateway):
    server = start_gateway("--allowed-origins", "https://app.example.com,https://admin.example.com")
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(server, origin="https://evil.example.net")
    assert refused.value.response.status_code == 403
    for origin in ("https://app.example.com", "https://admin.example.com"):
        ws = await open_ws(server, origin=origin)
        await ws.close()
    # Clients that are not browsers send no Origin: nothing to check.
    ws = await open_ws(server)
    await ws.close()


@aio
async def test_a_star_allows_any_origin(start_gateway):
    server = start_gateway("--allowed-origins", "*")
    ws = await open_ws(server, origin="https://anywhere.example.org")
    await ws.close()


@aio
async def test_without_a_list_loopback_allows_any_origin_quietly(start_gateway):
    server = start_gateway()
    ws = await open_ws(server, origin="http://localhost:3000")
    await ws.close()
    assert "allowed_origins" not in server.log


def test_serving_off_loopback_without_a_list_warns_at_start_up():
    """The warning comes before the port is bound: a TEST-NET address (RFC 5737), which no interface
    here has, shows it without listening anywhere but loopback."""
    result = subprocess.run(
        [WSA_FAST, "serve", "--host", "192.0.2.1", "--port", "0", "--auth", "dev"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, result
    assert "no allowed_origins set while serving 192.0.2.1" in result.stderr, result.stderr
