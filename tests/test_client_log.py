"""Lines caused by clients are INFO at most and rate-limited: no client can fill the log."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import picows
from raw_ws import CLOSE, CONTINUATION, PING, TEXT, RawWS, frame
from websockets.asyncio.client import connect
from wsa_ws import aio, close_code

from wsa_fast import client_log

BAD_CLIENTS = 100
SUPPRESSED = "similar lines suppressed"
# Once the burst is spent, a line gets through (and tells how many were suppressed) only this long
# after the last one did: a client that follows sooner is suppressed too, however many follow.
TOKEN_BACK = 1 / client_log.LINES_PER_SECOND


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


def most_lines(seconds: float) -> float:
    """What the token bucket lets through in ``seconds`` at most: the burst, then so many a second."""
    return client_log.BURST + client_log.LINES_PER_SECOND * seconds


def test_protocol_errors_are_info_lines_and_rate_limited(start_gateway):
    gateway = start_gateway()
    started = time.monotonic()
    for _ in range(BAD_CLIENTS):
        send_unmasked_frame(gateway.port)
    # More bad clients, spaced out, until a line tells how many were suppressed.
    for _ in range(100):
        send_unmasked_frame(gateway.port)
        if gateway.wait_for_log(SUPPRESSED, timeout=TOKEN_BACK):
            break
    seconds = time.monotonic() - started
    lines = [line for line in gateway.log.splitlines() if "it sent an unmasked frame" in line]
    assert lines and all(" INFO " in line for line in lines), lines[:3]
    assert len(lines) <= most_lines(seconds), f"{len(lines)} lines in {seconds:.1f}s for {BAD_CLIENTS}+ bad clients"
    assert SUPPRESSED in gateway.log


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
    async def run() -> float:
        started = time.monotonic()
        for _ in range(BAD_CLIENTS):
            assert await flood_until_closed(gateway.url) == 1008
        # More, one by one and spaced out, until a line tells how many were suppressed meanwhile.
        for _ in range(100):
            assert await flood_until_closed(gateway.url) == 1008
            if await asyncio.to_thread(gateway.wait_for_log, SUPPRESSED, TOKEN_BACK):
                break
        return time.monotonic() - started

    seconds = run()
    lines = [line for line in gateway.log.splitlines() if "wsa_fast.clients" in line]
    assert lines and all(" INFO " in line for line in lines), lines[:3]
    assert len(lines) <= most_lines(seconds), f"{len(lines)} lines in {seconds:.1f}s for {BAD_CLIENTS}+ clients closed"
    assert [line for line in lines if "rate-limited messages in a row" in line]
    assert SUPPRESSED in gateway.log


def raw_header(b0: int, b1: int, extended: bytes = b"") -> bytes:
    """A frame header as given, masked with a zero key, and no payload."""
    return bytes([b0, b1]) + extended + b"\0\0\0\0"


# Every rule a client frame can break, picows's own checks included (its parser never sees
# them: the FrameGate refuses first), as the bytes a client sends after the upgrade.
PROTOCOL_ERRORS = {
    "rsv": raw_header(0x80 | 0x40 | TEXT, 0x80),
    "unmasked": b"\x81\x05hello",
    "reserved data opcode": raw_header(0x80 | 0x3, 0x80),
    "reserved control opcode": raw_header(0x80 | 0xB, 0x80),
    "fragmented control": raw_header(PING, 0x80),
    "long control": raw_header(0x80 | PING, 0x80 | 126, struct.pack("!H", 200)),
    "16-bit length not minimal": raw_header(0x80 | TEXT, 0x80 | 126, struct.pack("!H", 5)),
    "64-bit length not minimal": raw_header(0x80 | TEXT, 0x80 | 127, struct.pack("!Q", 5)),
    "64-bit length with its top bit": raw_header(0x80 | TEXT, 0x80 | 127, struct.pack("!Q", 1 << 63)),
    "continuation with no message": frame(b"x", CONTINUATION),
    "new message inside a fragmented one": frame(b"a", TEXT, fin=False) + frame(b"b", TEXT),
    "one-byte close": frame(b"\x03", CLOSE),
    "close code 1005": frame(struct.pack("!H", 1005), CLOSE),
    "close reason not UTF-8": frame(struct.pack("!H", 1000) + b"\xff", CLOSE),
    # Past the FrameGate: the engine finds these once the whole message is in.
    "text message not UTF-8": frame(b"\xff", TEXT),
    "text fragments not UTF-8": frame(b"\xc3", TEXT, fin=False) + frame(b"\x28", CONTINUATION),
    "too many invalid messages": frame(b"{", TEXT) * 20,  # max_bad_messages
}


def break_the_protocol(port: int, data: bytes) -> int:
    """Upgrade, send ``data``, read until the server closes; returns the local port (the log names it)."""
    with RawWS("127.0.0.1", port) as raw:
        raw.send(data)
        try:
            while raw.recv()[0] != CLOSE:
                pass
            raw.send(frame(b"", CLOSE))
            while raw.sock.recv(4096):
                pass
        except (ConnectionError, OSError):
            pass
        return raw.sock.getsockname()[1]


def test_every_protocol_error_is_one_info_line_of_the_clients_logger(start_gateway):
    gateway = start_gateway("--log-format", "json")
    # All at once: after a bad header the server waits out its close timeout (5 s) for a CLOSE it cannot parse.
    with ThreadPoolExecutor(len(PROTOCOL_ERRORS)) as pool:
        broken = {kind: pool.submit(break_the_protocol, gateway.port, data) for kind, data in PROTOCOL_ERRORS.items()}
        ports = {kind: future.result() for kind, future in broken.items()}
    # A last, well-behaved client: once it is answered, every bad client's line is written.
    assert '"success"' in ping_once(gateway.port)
    lines = [json.loads(line) for line in gateway.log.splitlines() if line.startswith("{")]
    for kind, port in ports.items():
        about = [line for line in lines if f", {port})" in line["message"]]
        assert len(about) == 1, (kind, about)
        assert (about[0]["level"], about[0]["logger"]) == ("info", "wsa_fast.clients"), (kind, about[0])
    # Above INFO: only the start-up warning about dev auth (wsa_fast.cli), nothing about a client.
    noisy = [line for line in lines if line["level"] not in ("info", "debug") and line["logger"] != "wsa_fast.cli"]
    assert not noisy, noisy
    assert not [line for line in lines if line["logger"].startswith("picows")], lines


def ping_once(port: int) -> str:
    with RawWS("127.0.0.1", port) as raw:
        raw.send(
            frame(
                json.dumps(
                    {
                        "from": "calm",
                        "to": "server",
                        "type": "request",
                        "id": "ping1",
                        "payload": {"method": "wsa@v1/ping"},
                    }
                ).encode()
            )
        )
        return raw.recv_text()


def test_picows_own_protocol_error_line_becomes_one_info_line():
    """Should picows itself meet a client's bad frame, its ERROR line is rewritten by the filter the
    gateway installs: INFO, and rate-limited with the other client lines. A bare picows server
    (no FrameGate in front, which the gateway never runs) shows the filter matches picows's real
    wording (picows may log the same parser error more than once)."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    root = logging.getLogger()
    handler, level = Keep(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    log_filter = client_log.install()
    try:

        @aio
        async def run() -> None:
            server = await picows.ws_create_server(
                lambda request: picows.WSListener(), "127.0.0.1", 0, logger_name="wsa_fast.picows"
            )
            port = server.sockets[0].getsockname()[1]
            try:
                await asyncio.to_thread(send_unmasked_frame, port)
            finally:
                server.close()

        run()
    finally:
        for each in root.handlers:
            each.removeFilter(log_filter)
        root.removeHandler(handler)
        root.setLevel(level)
    parser_lines = [
        r for r in seen if r.name.startswith(client_log.PICOWS_LOGGER) and "WS parser error" in r.getMessage()
    ]
    assert parser_lines, [(r.name, r.levelname, r.getMessage()) for r in seen]
    assert all(r.levelname == "INFO" and r.levelno == logging.INFO for r in parser_lines)
    assert not [r for r in seen if r.levelno > logging.INFO], [(r.name, r.levelname, r.getMessage()) for r in seen]
