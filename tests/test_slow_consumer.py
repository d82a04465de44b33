"""A client that stops reading is cut off (docs/protocol.md "Overload") instead of growing server memory."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

import psutil
import pytest
import websockets

# Floods a client that does not read until it is cut off: seconds each.
pytestmark = pytest.mark.slow

LIMIT = 256 * 1024
PAYLOAD = "x" * 8192
FLOOD = 4000  # 32 MiB of events, far past the limit and the kernel's socket buffers


def rss_kib(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss // 1024


def open_silent_client(port: int, client_id: str) -> socket.socket:
    """A raw WebSocket client that logs in and then never reads again."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response
    login = json.dumps(
        {"from": client_id, "to": "server", "type": "request", "id": "login", "payload": {"method": "auth@v1/login"}}
    ).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(login))
    sock.sendall(bytes([0x81, 0x80 | len(login)]) + mask + masked)
    return sock


def flood_then_ping(port: int) -> list[str]:
    """Send FLOOD events to the sleeper, then a ping; return the codes of every answer before the ping's."""

    async def run() -> list[str]:
        codes = []
        async with websockets.connect(f"ws://127.0.0.1:{port}") as sender:
            await sender.send(
                json.dumps(
                    {
                        "from": "flood",
                        "to": "server",
                        "type": "request",
                        "id": "abcde",
                        "payload": {"method": "auth@v1/login"},
                    }
                )
            )
            assert json.loads(await sender.recv())["payload"]["result"] == "success"

            async def send_all() -> None:
                for n in range(FLOOD):
                    await sender.send(
                        json.dumps(
                            {
                                "from": "flood",
                                "to": "sleeper",
                                "type": "event",
                                "id": f"{n:05d}",
                                "payload": {"method": "chat@v1/spam", "params": {"text": PAYLOAD}},
                            }
                        )
                    )
                await sender.send(
                    json.dumps(
                        {
                            "from": "flood",
                            "to": "server",
                            "type": "request",
                            "id": "pingz",
                            "payload": {"method": "wsa@v1/ping"},
                        }
                    )
                )

            sending = asyncio.create_task(send_all())
            while True:
                reply = json.loads(await sender.recv())
                if reply["id"] == "pingz":
                    break
                codes.append(reply["payload"]["code"])
            await sending
        return codes

    return asyncio.run(run())


def test_a_client_that_does_not_read_is_disconnected(start_gateway):
    """The sender is held back while the sleeper is backed up, then the sleeper is cut off."""
    gateway = start_gateway("--limits", "off", "--send-buffer-limit", str(LIMIT), "--slow-consumer-timeout", "1")
    silent = open_silent_client(gateway.port, "sleeper")
    baseline = rss_kib(gateway.proc.pid)
    codes = flood_then_ping(gateway.port)
    # Once the sleeper is cut off, the rest of the flood finds nobody there.
    assert codes and set(codes) == {"NOT_FOUND"}
    assert "it does not read: its unsent output stayed over send_buffer_limit (262144 bytes) for 1s" in gateway.log
    grown_mib = (rss_kib(gateway.proc.pid) - baseline) / 1024
    assert grown_mib < 16, f"server RSS grew by {grown_mib:.1f} MiB for one slow client"
    silent.close()


def test_a_client_past_the_hard_cap_is_disconnected_at_once(start_gateway):
    """Past send_buffer_cap, no waiting for slow_consumer_timeout (an hour here)."""
    gateway = start_gateway(
        "--limits",
        "off",
        "--send-buffer-limit",
        str(LIMIT),
        "--send-buffer-cap",
        str(LIMIT),
        "--slow-consumer-timeout",
        "3600",
    )
    silent = open_silent_client(gateway.port, "sleeper")
    codes = flood_then_ping(gateway.port)
    assert codes and set(codes) == {"NOT_FOUND"}
    assert f"its unsent output passed send_buffer_cap ({LIMIT} bytes)" in gateway.log
    silent.close()
