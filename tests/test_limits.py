"""End to end, the limits of README's table: hit each one, get the documented answer, and see the
connection (or the other clients) carry on. docs/protocol.md "Overload" and "Limits"."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import socket
import time

import pytest
from raw_ws import CLOSE, RawWS, frame
from test_overload import login, ping, short_id, until_reachable
from test_slow_consumer import rss_kib
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from wsa_ws import aio, close_code, http_get


def event(frm: str, to: str, msg_id: str, params=None) -> str:
    payload = {"method": "app@v1/note"}
    if params is not None:
        payload["params"] = params
    return json.dumps({"from": frm, "to": to, "type": "event", "id": msg_id, "payload": payload})


def request(frm: str, to: str, msg_id: str, method: str = "wsa@v1/ping") -> str:
    return json.dumps({"from": frm, "to": to, "type": "request", "id": msg_id, "payload": {"method": method}})


async def recv_json(ws) -> dict:
    try:
        return json.loads(await asyncio.wait_for(ws.recv(), 10))
    except asyncio.TimeoutError:
        raise AssertionError("no message within 10 s") from None


async def codes_until_admitted(ws, client_id: str) -> list[str]:
    """The codes of everything ``ws`` got back, until a ping gets through (once the bucket refilled)."""
    codes = []
    for attempt in range(200):
        ping_id = short_id("w", attempt)
        await ws.send(request(client_id, "server", ping_id))
        while (reply := await recv_json(ws))["id"] != ping_id:
            codes.append(reply["payload"]["code"])
        if reply["payload"]["result"] == "success":
            return codes
        assert reply["payload"]["code"] == "RATE_LIMITED", reply
        await asyncio.sleep(0.05)
    raise AssertionError("the rate limit never let a ping through again")


async def refused_then_delivered(gateway, count: int, message) -> tuple[list[str], int]:
    """ "sender" sends ``count`` messages back to back to "receiver" (or all); returns the codes it
    got back and how many the receiver received (each message is answered or delivered, not both)."""
    async with connect(gateway.url) as sender, connect(gateway.url) as receiver:
        await login(sender, "sender")
        await login(receiver, "receiver")
        await until_reachable(sender, "sender", receiver, "receiver")
        for n in range(count):
            await sender.send(message(short_id("m", n)))
        codes = await codes_until_admitted(sender, "sender")
        expected = count - len(codes)
        for _ in range(expected):
            assert (await recv_json(receiver))["payload"]["method"] == "app@v1/note"
        # Nothing more: the next message is the answer to a ping.
        assert (await ping(receiver, "receiver", "zzzzz"))["id"] == "zzzzz"
        return codes, expected


def test_message_rate_limit_refuses_without_delivering(start_gateway):
    gateway = start_gateway("--rate-limit-messages", "20", "--max-refused-messages", "1000")

    @aio
    async def run() -> None:
        codes, received = await refused_then_delivered(gateway, 60, lambda msg_id: event("sender", "receiver", msg_id))
        assert codes and set(codes) == {"RATE_LIMITED"}
        assert received + len(codes) == 60

    run()


def test_byte_rate_limit(start_gateway):
    gateway = start_gateway("--rate-limit-bytes", "10000", "--max-message-size", "10000")
    blob = "b" * 4000

    @aio
    async def run() -> None:
        codes, received = await refused_then_delivered(
            gateway, 6, lambda msg_id: event("sender", "receiver", msg_id, {"blob": blob})
        )
        assert codes and set(codes) == {"RATE_LIMITED"}
        assert received + len(codes) == 6 and received >= 2

    run()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_broadcast_rate_limit_is_separate_and_lower(start_gateway, workers):
    gateway = start_gateway("--rate-limit-broadcasts", "3", "--workers", workers)

    @aio
    async def run() -> None:
        codes, received = await refused_then_delivered(gateway, 12, lambda msg_id: event("sender", "client", msg_id))
        assert codes and set(codes) == {"RATE_LIMITED"}, (codes, gateway.log)
        assert received + len(codes) == 12 and received >= 1, (codes, received, gateway.log)
        # Direct events are under the (higher) message limit: none refused.
        codes, received = await refused_then_delivered(gateway, 12, lambda msg_id: event("sender", "receiver", msg_id))
        # The log goes with a failure: the two-worker case failed once under load, its cause not found yet.
        assert codes == [] and received == 12, (codes, received, gateway.log)

    run()


def test_a_client_that_keeps_going_is_closed_with_1008(start_gateway):
    gateway = start_gateway("--rate-limit-messages", "5", "--max-refused-messages", "10")

    @aio
    async def run() -> None:
        async with connect(gateway.url) as flooder, connect(gateway.url) as other:
            await login(other, "other")
            for n in range(40):
                await flooder.send(request("flooder", "server", short_id("f", n)))
            code, before = await close_code(flooder)
            results = [json.loads(m)["payload"].get("code", "success") for m in before]
            assert code == 1008 and flooder.close_reason == "rate limit exceeded"
            assert results[:5] == ["success"] * 5 and results[-10:] == ["RATE_LIMITED"] * 10
            # The other client, under the same limits, carries on.
            assert await codes_until_admitted(other, "other") == []

    run()
    assert gateway.wait_for_log("rate-limited messages in a row"), gateway.log


@pytest.mark.parametrize("workers", ["1", "2"])
def test_max_pending(start_gateway, workers):
    gateway = start_gateway("--max-pending", "5", "--workers", workers)

    @aio
    async def run() -> None:
        async with connect(gateway.url) as requester, connect(gateway.url) as target:
            await login(requester, "requester")
            await login(target, "target")
            await until_reachable(requester, "requester", target, "target")
            for n in range(8):
                await requester.send(request("requester", "target", short_id("q", n), "app@v1/slow"))
            refused = [await recv_json(requester) for _ in range(3)]
            assert [r["id"] for r in refused] == [short_id("q", n) for n in (5, 6, 7)]
            assert all(r["payload"] == {"result": "fail", "code": "RATE_LIMITED"} for r in refused)
            arrived = [await recv_json(target) for _ in range(5)]
            assert [m["id"] for m in arrived] == [short_id("q", n) for n in range(5)]
            # One answered: room for one more.
            await target.send(
                json.dumps(
                    {
                        "from": "target",
                        "to": "requester",
                        "type": "response",
                        "id": arrived[0]["id"],
                        "payload": {"result": "success"},
                    }
                )
            )
            assert (await recv_json(requester))["payload"]["result"] == "success"
            await requester.send(request("requester", "target", "again", "app@v1/slow"))
            assert (await recv_json(target))["id"] == "again"

    run()


def test_answered_requests_free_their_pending_entries_at_once(start_gateway):
    """max_pending counts requests waiting, not requests made: wave after wave of max_pending requests,
    each answered, is never refused, and the pending gauge returns to zero long before request_timeout."""
    gateway = start_gateway("--max-pending", "20", "--request-timeout", "3600")

    @aio
    async def run() -> None:
        async with connect(gateway.url) as requester, connect(gateway.url) as target:
            await login(requester, "requester")
            await login(target, "target")
            for wave in range(25):
                ids = [short_id("w", wave * 20 + n) for n in range(20)]
                for msg_id in ids:
                    await requester.send(request("requester", "target", msg_id, "app@v1/slow"))
                for msg_id in ids:
                    assert (await recv_json(target))["id"] == msg_id
                if wave == 0:
                    # Twenty waiting: the gauge shows them (it is refreshed once a second).
                    await asyncio.to_thread(wait_for_gauge, gateway, "wsa_pending_requests", 20)
                for msg_id in ids:
                    await target.send(
                        json.dumps(
                            {
                                "from": "target",
                                "to": "requester",
                                "type": "response",
                                "id": msg_id,
                                "payload": {"result": "success"},
                            }
                        )
                    )
                for msg_id in ids:
                    reply = await recv_json(requester)
                    assert (reply["id"], reply["payload"]) == (msg_id, {"result": "success"}), reply
            await asyncio.to_thread(wait_for_gauge, gateway, "wsa_pending_requests", 0)

    run()


def wait_for_gauge(gateway, series: str, value: float) -> None:
    """Scrape /metrics until ``series`` reads ``value`` (gauges are refreshed once a second)."""
    while True:
        status, body = http_get(gateway, "/metrics")
        assert status == 200, body
        for line in body.decode().splitlines():
            if line.startswith(series + " ") and float(line.split()[-1]) == value:
                return
        time.sleep(0.05)


def serve_answered_requests(port: int, waves: int, per_wave: int, first: int) -> None:
    """A requester sends ``per_wave`` requests to a target in one write; the target answers them all in
    one write; ``waves`` times. Raw frames, built once, so the clients keep up with the gateway."""

    def data_frame(text: str) -> bytes:
        return frame(text.encode(), mask=b"\0\0\0\0")  # a zero masking key: the payload as is

    with RawWS("127.0.0.1", port) as requester, RawWS("127.0.0.1", port) as target:
        for raw, name in ((requester, "requester"), (target, "target")):
            raw.send(
                data_frame(
                    json.dumps(
                        {
                            "from": name,
                            "to": "server",
                            "type": "request",
                            "id": "login",
                            "payload": {"method": "auth@v1/login"},
                        }
                    )
                )
            )
            assert '"success"' in raw.recv_text()
        for wave in range(waves):
            ids = [short_id("d", first + wave * per_wave + n) for n in range(per_wave)]
            requester.send(b"".join(data_frame(request("requester", "target", i, "app@v1/slow")) for i in ids))
            read_frames(target, per_wave)
            target.send(
                b"".join(
                    data_frame(
                        json.dumps(
                            {
                                "from": "target",
                                "to": "requester",
                                "type": "response",
                                "id": i,
                                "payload": {"result": "success"},
                            }
                        )
                    )
                    for i in ids
                )
            )
            answers = read_frames(requester, per_wave)
            assert all(b'"success"' in answer for answer in answers), answers[:3]


def read_frames(raw: RawWS, count: int) -> list[bytes]:
    """The payloads of the next ``count`` unfragmented text frames of small size (no 64-bit lengths)."""
    data, pos, out = raw._buf, 0, []
    while len(out) < count:
        if len(data) - pos >= 4:
            n, at = data[pos + 1] & 0x7F, pos + 2
            if n == 126:
                n, at = int.from_bytes(data[pos + 2 : pos + 4], "big"), pos + 4
            if len(data) - at >= n:
                assert data[pos] == 0x81, data[pos : pos + 20]
                out.append(data[at : at + n])
                pos = at + n
                continue
        chunk = raw.sock.recv(1 << 20)
        assert chunk, "the gateway closed the connection"
        data = data[pos:] + chunk
        pos = 0
    raw._buf = data[pos:]
    return out


@pytest.mark.slow  # 330,000 requests: about 10 s of both cores
def test_answered_requests_free_their_deadlines(start_gateway):
    """A long request_timeout must not keep an answered request's deadline: 300,000 requests answered
    within an hour's timeout would otherwise hold 300,000 deadline entries (38 MiB, measured with the
    compaction in PendingTable.add turned off; 0.05 MiB with it)."""
    gateway = start_gateway("--request-timeout", "3600", "--limits", "off")
    # Warm up: the allocator, the tables and the read buffers reach their working size.
    serve_answered_requests(gateway.port, 30, 1000, 0)
    before = rss_kib(gateway.proc.pid)
    serve_answered_requests(gateway.port, 300, 1000, 30_000)
    grown_mib = (rss_kib(gateway.proc.pid) - before) / 1024
    assert grown_mib < 4, f"the gateway grew by {grown_mib:.1f} MiB over 300,000 answered requests"


def test_limits_off_lifts_rate_limits_and_max_pending(start_gateway):
    gateway = start_gateway("--limits", "off", "--rate-limit-messages", "5", "--max-pending", "2")

    @aio
    async def run() -> None:
        codes, received = await refused_then_delivered(gateway, 50, lambda msg_id: event("sender", "receiver", msg_id))
        assert codes == [] and received == 50
        async with connect(gateway.url) as requester, connect(gateway.url) as target:
            await login(requester, "requester")
            await login(target, "target")
            for n in range(10):
                await requester.send(request("requester", "target", short_id("q", n), "app@v1/slow"))
            assert [(await recv_json(target))["id"] for _ in range(10)] == [short_id("q", n) for n in range(10)]

    run()


def test_max_connections_refuses_with_503(start_gateway):
    gateway = start_gateway("--max-connections", "3")

    @aio
    async def run() -> None:
        clients = [await connect(gateway.url) for _ in range(3)]
        with pytest.raises(InvalidStatus) as refused:
            await connect(gateway.url)
        assert refused.value.response.status_code == 503
        await login(clients[0], "first")
        assert (await ping(clients[0], "first"))["payload"]["result"] == "success"
        await clients[2].close()
        # The server notices the close on its own time: retry until the slot is free.
        for _ in range(100):
            try:
                clients[2] = await connect(gateway.url)
                break
            except InvalidStatus as error:
                assert error.response.status_code == 503
                await asyncio.sleep(0.02)
        else:
            raise AssertionError("a closed connection never freed its slot")
        for ws in clients:
            await ws.close()

    run()


def test_max_connections_per_ip_refuses_with_429(start_gateway):
    gateway = start_gateway("--max-connections-per-ip", "2")

    @aio
    async def run() -> None:
        clients = [await connect(gateway.url) for _ in range(2)]
        with pytest.raises(InvalidStatus) as refused:
            await connect(gateway.url)
        assert refused.value.response.status_code == 429
        # Another address (all of 127/8 is loopback) still gets in.
        async with connect(gateway.url, local_addr=("127.0.0.2", 0)) as elsewhere:
            await login(elsewhere, "elsewhere")
        await login(clients[0], "first")
        assert (await ping(clients[0], "first"))["payload"]["result"] == "success"
        for ws in clients:
            await ws.close()

    run()


def test_an_incomplete_fragmented_message_times_out(start_gateway):
    gateway = start_gateway("--message-timeout", "0.5")

    @aio
    async def run() -> None:
        async with connect(gateway.url) as stalled, connect(gateway.url) as other:
            await login(other, "other")
            never = asyncio.Event()

            async def fragments():
                yield '{"from": "stalled", '
                await never.wait()

            sending = asyncio.create_task(stalled.send(fragments()))
            code, _ = await close_code(stalled)
            assert code == 1008 and stalled.close_reason == "message incomplete"
            sending.cancel()
            assert (await ping(other, "other"))["payload"]["result"] == "success"

    run()


def trickle_until_closed(port: int, data: bytes, pause: float) -> tuple[int, int, str]:
    """Send ``data`` a byte every ``pause`` seconds until the server's CLOSE arrives: (bytes sent, code, reason)."""
    with RawWS("127.0.0.1", port) as raw:
        for sent in range(len(data)):
            raw.send(data[sent : sent + 1])
            if select.select([raw.sock], [], [], pause)[0]:
                opcode, payload = raw.recv()
                assert opcode == CLOSE, (opcode, payload)
                return sent + 1, int.from_bytes(payload[:2], "big"), payload[2:].decode()
        raise AssertionError(f"the whole frame ({len(data)} bytes) went through without a close")


def test_a_frame_trickled_slower_than_message_timeout_is_closed(start_gateway):
    gateway = start_gateway("--message-timeout", "0.5")
    # One frame, a whole ping request, its bytes 20 ms apart: 400 bytes would take 8 s, 16 timeouts.
    text = json.dumps(
        {"from": "slow", "to": "server", "type": "request", "id": "slow1", "payload": {"method": "wsa@v1/ping"}}
    )
    data = frame(text.ljust(400).encode())

    @aio
    async def run() -> None:
        async with connect(gateway.url) as other:
            await login(other, "other")
            trickling = asyncio.create_task(asyncio.to_thread(trickle_until_closed, gateway.port, data, 0.02))
            while not trickling.done():
                assert (await ping(other, "other"))["payload"]["result"] == "success"
                await asyncio.sleep(0.05)
            sent, code, reason = await trickling
            assert (code, reason) == (1008, "message incomplete")
            assert 2 < sent < len(data)
            assert (await ping(other, "other", "after"))["payload"]["result"] == "success"

    run()
    # Written before the CLOSE went out; the test's reader of the server's output may lag behind.
    assert gateway.wait_for_log("message_timeout"), gateway.log
    lines = [line for line in gateway.log.splitlines() if "message_timeout" in line]
    assert len(lines) == 1 and " INFO " in lines[0] and "wsa_fast.clients" in lines[0], lines


def test_partial_messages_of_a_worker_are_capped(start_gateway):
    gateway = start_gateway("--max-partial-memory", "100000")

    @aio
    async def run() -> None:
        async with connect(gateway.url) as first, connect(gateway.url) as second:
            await login(first, "first")
            await login(second, "second")
            go_on = asyncio.Event()
            text = json.dumps(
                {
                    "from": "first",
                    "to": "server",
                    "type": "request",
                    "id": "whole",
                    "payload": {"method": "wsa@v1/ping", "params": {"pad": "p" * 60000}},
                }
            )

            async def first_parts():
                yield text[:60000]
                await go_on.wait()
                yield text[60000:]

            async def second_parts():
                yield "q" * 60000
                await asyncio.Event().wait()

            sending = asyncio.create_task(first.send(first_parts()))
            # A WebSocket ping may come between fragments: its pong means the first fragment is held.
            await (await first.ping())
            stalled = asyncio.create_task(second.send(second_parts()))
            code, _ = await close_code(second)
            assert code == 1013
            stalled.cancel()
            go_on.set()
            await sending
            assert (await recv_json(first))["id"] == "whole"

    run()


def open_raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
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
    return sock


@pytest.mark.parametrize("workers", ["1", "2"])
def test_keepalive_closes_a_peer_that_does_not_answer_pings(start_gateway, workers):
    gateway = start_gateway("--ping-interval", "0.3", "--ping-timeout", "0.3", "--workers", workers)

    @aio
    async def run() -> None:
        async with connect(gateway.url, ping_interval=None) as alive:
            await login(alive, "alive")
            mute = await asyncio.to_thread(open_raw, gateway.port)
            received = await asyncio.to_thread(read_until_eof, mute)
            opcodes = [frame[0] & 0x0F for frame in received]
            assert opcodes[0] == 0x9 and opcodes[-1] == 0x8, opcodes  # PING, then CLOSE
            assert int.from_bytes(received[-1][2:4], "big") == 1001
            # websockets answers pings: idle as long, it is still connected.
            assert (await ping(alive, "alive"))["payload"]["result"] == "success"

    def read_until_eof(sock: socket.socket) -> list[bytes]:
        data = b""
        with sock:
            try:
                while chunk := sock.recv(4096):
                    data += chunk
            except ConnectionResetError:
                pass
        frames = []
        while len(data) >= 2:
            size = data[1] & 0x7F
            frames.append(data[: 2 + size])
            data = data[2 + size :]
        return frames

    run()
