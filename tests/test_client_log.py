"""Lines caused by clients are INFO at most and rate-limited: no client can fill the log."""

from __future__ import annotations

import base64
import json
import os
import socket

from websockets.asyncio.client import connect
from wsa_ws import aio, close_code

BAD_CLIENTS = 100


def send_unmasked_frame(port: int) -> None:
    """Upgrade, then break the protocol (a client frame must be masked): the server closes with 1002."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(4096)
        assert response.startswith(b"HTTP/1.1 101"), response
        sock.sendall(b"\x81\x05hello")
        answer = b""
        while len(answer) < 4:  # the server's CLOSE: 0x88, its length, 1002
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
        assert answer[0] == 0x88 and answer[2:4] == (1002).to_bytes(2, "big"), answer
        sock.sendall(b"\x88\x80\x00\x00\x00\x00")  # our CLOSE (masked, empty): the server then closes TCP
        while sock.recv(4096):
            pass


def test_protocol_errors_are_info_lines_and_rate_limited(start_gateway):
    gateway = start_gateway()
    for _ in range(BAD_CLIENTS):
        send_unmasked_frame(gateway.port)
    # More bad clients, spaced out, until a line tells how many were suppressed.
    for _ in range(100):
        send_unmasked_frame(gateway.port)
        if gateway.wait_for_log("similar lines suppressed", timeout=0.2):
            break
    lines = [line for line in gateway.log.splitlines() if "it sent an unmasked frame" in line]
    assert lines and all(" INFO " in line for line in lines), lines[:3]
    assert len(lines) < BAD_CLIENTS / 2, f"{len(lines)} lines for {BAD_CLIENTS}+ bad clients"
    assert "similar lines suppressed" in gateway.log


async def flood_until_closed(url: str) -> int:
    """Three pings at once against a limit of one a second: refused, then closed (1008)."""
    async with connect(url) as ws:
        for n in range(3):
            await ws.send(
                json.dumps(
                    {
                        "from": "flood",
                        "to": "server",
                        "type": "request",
                        "id": f"fl{n:03d}",
                        "payload": {"method": "wsa@v1/ping"},
                    }
                )
            )
        code, _ = await close_code(ws)
        return code


def test_rate_limit_closes_are_info_lines_and_rate_limited(start_gateway):
    gateway = start_gateway("--rate-limit-messages", "1", "--max-refused-messages", "1")

    @aio
    async def run() -> None:
        for _ in range(BAD_CLIENTS):
            assert await flood_until_closed(gateway.url) == 1008
        # More, one by one, until a line tells how many were suppressed meanwhile.
        for _ in range(100):
            assert await flood_until_closed(gateway.url) == 1008
            if "similar lines suppressed" in gateway.log:
                break

    run()
    lines = [line for line in gateway.log.splitlines() if "wsa_fast.clients" in line]
    assert lines and all(" INFO " in line for line in lines), lines[:3]
    closes = [line for line in lines if "rate-limited messages in a row" in line]
    assert 0 < len(closes) < BAD_CLIENTS / 2, f"{len(closes)} lines for {BAD_CLIENTS}+ clients closed"
    assert "similar lines suppressed" in gateway.log
