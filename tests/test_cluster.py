"""One gateway over many workers and nodes: every routing rule across process boundaries.

Gateways are started as users start them: ``wsa-fast serve --workers 2`` (the embedded
nats-server), or separate ``wsa-fast serve --nats URL`` nodes on a real ``nats-server``
(one, or a cluster of two). Clients are the independent ``websockets`` library; the
``cluster@v1/where`` handler of tests/apps/cluster_app.py tells which worker process a
connection landed on, so each test places its clients on different workers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from nats_server import NatsServer, free_port
from wsa_ws import (
    Clients,
    GatewayProcess,
    Peer,
    aio,
    close_code,
    expect_fail,
    expect_response,
    first_message,
    new_id,
    settled,
    uid,
)

# Multi-worker gateways and nats-servers started per test, kills and restarts: seconds each.
pytestmark = pytest.mark.slow

APP = "tests.apps.cluster_app:app"
# A remote login becomes visible to other workers within milliseconds; tests wait at most this.
PRESENCE_WAIT = 5.0
# A killed worker is forgotten after PRESENCE_TIMEOUT (3.5 s) of silence, plus a heartbeat.
DEATH_WAIT = 8.0


# ---------------------------------------------------------------- helpers


async def where(peer: Peer) -> int:
    reply = await peer.call("server", "cluster@v1/where")
    return reply["payload"]["data"]["pid"]


async def on_workers(
    clients: Clients, count: int, forms: tuple[str, ...] = ("verbose", "compact"), tries: int = 60
) -> list[Peer]:
    """``count`` logged-in peers, each on a different worker process (the kernel picks; we retry)."""
    placed: dict[int, Peer] = {}
    for _attempt in range(tries):
        peer = await clients.open(forms[len(placed) % len(forms)], login=uid("w"))
        pid = await where(peer)
        if pid not in placed:
            placed[pid] = peer
            if len(placed) == count:
                return list(placed.values())
    raise AssertionError(f"{tries} connections reached only {len(placed)} workers")


async def visible(sender: Peer, target: Peer, method: str = "test@v1/probe") -> None:
    """Wait until the sender's worker knows where the target is (a login propagates in milliseconds).

    Probes with events of ``method``, which the sender must be allowed to send: each is delivered to the
    target or refused to the sender, whichever comes first (not "no answer within so long"): NOT_FOUND
    while the login is on its way, UNAVAILABLE just after a NATS reconnect until the target's worker
    has spoken again.
    """
    deadline = time.monotonic() + PRESENCE_WAIT
    while True:
        msg_id = await sender.event(target.cid, method)
        who, message = await first_message(sender, target)
        if who is target:
            break
        code = message["payload"].get("code")
        assert code in ("NOT_FOUND", "UNAVAILABLE"), message
        expect_fail(message, code, id=msg_id, to=sender.cid)
        assert time.monotonic() < deadline, f"{target.cid} never became reachable from {sender.cid}"
        await asyncio.sleep(0.05)
    assert (message["id"], message["payload"]) == (msg_id, {"method": method}), message


async def call_when_visible(sender: Peer, target: Peer, method: str = "test@v1/hello", params: Any = None) -> str:
    """Once the target is visible, send it a request; returns the request's id."""
    await visible(sender, target)
    return await sender.request(target.cid, method, params if params is not None else {"n": 1})


async def relay_round_trip(a: Peer, b: Peer) -> None:
    """a asks b, b receives exactly the request in its own form and answers, a gets the answer."""
    msg_id = await call_when_visible(a, b, "test@v1/hello", {"text": "héllo", "n": [1, 2.5, None]})
    got = await b.recv()
    assert got == {
        "from": a.cid,
        "to": b.cid,
        "type": "request",
        "id": msg_id,
        "payload": {"method": "test@v1/hello", "params": {"text": "héllo", "n": [1, 2.5, None]}},
    }, got
    await b.respond(a.cid, msg_id, "success", receipt="r-1", data={"ok": True})
    reply = await a.recv()
    expect_response(reply, id=msg_id, to=a.cid, frm=b.cid, receipt="r-1", data={"ok": True})


async def until_answered(answers: dict[str, list[str]], ids: list[str], patience: float = 30.0) -> None:
    """Wait until each of ``ids`` has an answer in ``answers`` (filled by another task), or ``patience``
    has passed: the assertions that follow then name the ones without."""
    deadline = time.monotonic() + patience
    while any(msg_id not in answers for msg_id in ids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def drain_messages(peer: Peer, seconds: float = 0.3) -> list[dict]:
    out = []
    while True:
        try:
            out.append(await peer.recv(seconds))
        except AssertionError:
            return out


def gateway(*args: str) -> GatewayProcess:
    return GatewayProcess(*args, "--app", APP)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def two_workers() -> Iterator[GatewayProcess]:
    """``wsa-fast serve --workers 2``: the supervisor, two workers, an embedded nats-server."""
    with gateway("--workers", "2", "--request-timeout", "1.5") as server:
        yield server


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


@pytest.fixture(scope="module")
def two_nodes(nats: NatsServer) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two separate single-worker nodes joined through one real nats-server."""
    with gateway("--nats", nats.url) as one, gateway("--nats", nats.url) as two:
        yield one, two


# ---------------------------------------------------------------- two workers through the CLI


def test_workers_share_one_port(two_workers: GatewayProcess) -> None:
    assert "2 workers" in two_workers.log
    pids = {line.split("pid ")[1].split(")")[0] for line in two_workers.log.splitlines() if "embedded nats" in line}
    assert len(pids) == 1, two_workers.log

    @aio
    async def check() -> None:
        async with Clients(two_workers) as clients:
            a, b = await on_workers(clients, 2)
            assert await where(a) != await where(b)

    check()


def go_threads(pid: int) -> str | None:
    """The GOMAXPROCS a running Go program was started with, if any."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        for entry in f.read().split(b"\0"):
            if entry.startswith(b"GOMAXPROCS="):
                return entry.split(b"=", 1)[1].decode()
    return None


def test_the_embedded_nats_server_runs_on_one_go_thread(two_workers: GatewayProcess) -> None:
    nats_pid = int(two_workers.log.split("embedded nats-server (pid ")[1].split(")")[0])
    assert go_threads(nats_pid) == "1"


def test_a_gomaxprocs_the_user_set_reaches_the_embedded_nats_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsa_fast.embedded_nats import EmbeddedNats

    monkeypatch.setenv("GOMAXPROCS", "3")
    nats = EmbeddedNats(1 << 20)
    try:
        assert go_threads(nats.proc.pid) == "3"
    finally:
        nats.stop()


@aio
async def test_relay_across_workers_in_both_forms(two_workers: GatewayProcess) -> None:
    async with Clients(two_workers) as clients:
        a, b = await on_workers(clients, 2, forms=("verbose", "compact"))
        await relay_round_trip(a, b)
        await relay_round_trip(b, a)
        # Events cross too, and get no answer.
        msg_id = await a.event(b.cid, "test@v1/note", {"x": 1})
        assert await b.recv() == {
            "from": a.cid,
            "to": b.cid,
            "type": "event",
            "id": msg_id,
            "payload": {"method": "test@v1/note", "params": {"x": 1}},
        }
        # a's own worker would have answered at once; another worker's answer would cross NATS: watch a while.
        await settled(a)
        await a.silent(0.2)


@aio
async def test_every_field_crosses_workers_as_sent(two_workers: GatewayProcess) -> None:
    """Escapes, absent and empty params, a fail with code and data, null and escaped receipts."""
    async with Clients(two_workers) as clients:
        a, b = await on_workers(clients, 2)
        await visible(a, b)
        tricky = {
            "text": 'quote " backslash \\ newline \n tab \t \u00e9 \U0001f600 \u0001',
            "n": [1, -2.5e10, None, True, {}],
        }
        note = await a.event(b.cid, "test@v1/note", tricky)
        assert await b.recv() == {
            "from": a.cid,
            "to": b.cid,
            "type": "event",
            "id": note,
            "payload": {"method": "test@v1/note", "params": tricky},
        }
        ask = await a.request(b.cid, "test@v1/bare")
        assert (await b.recv())["payload"] == {"method": "test@v1/bare"}
        await b.respond(a.cid, ask, "fail", code="NOT_TODAY", data={"why": "\u00e9\n"})
        expect_response(
            await a.recv(), id=ask, to=a.cid, frm=b.cid, result="fail", code="NOT_TODAY", data={"why": "\u00e9\n"}
        )
        ask = await a.request(b.cid, "test@v1/bare", [])
        assert (await b.recv())["payload"] == {"method": "test@v1/bare", "params": []}
        await b.respond(a.cid, ask, receipt=None)
        expect_response(await a.recv(), id=ask, to=a.cid, frm=b.cid, receipt=None)
        ask = await a.request(b.cid, "test@v1/bare")
        await b.recv()
        await b.respond(a.cid, ask, receipt='r "1" \\ \u00e9')
        expect_response(await a.recv(), id=ask, to=a.cid, frm=b.cid, receipt='r "1" \\ \u00e9')


@aio
async def test_a_message_near_the_size_limit_crosses_workers(two_workers: GatewayProcess) -> None:
    """Bigger than the NATS client's read buffer: read whole over several reads, and routing goes on."""
    async with Clients(two_workers) as clients:
        a, b = await on_workers(clients, 2)
        await visible(a, b)
        text = "\u00e9" * 400_000 + "x" * 100_000  # 900,000 bytes of UTF-8
        for _ in range(2):
            big = await a.event(b.cid, "test@v1/big", {"text": text})
            small = await a.event(b.cid, "test@v1/small", [1])
            got = await b.recv()
            assert (got["id"], got["payload"]) == (big, {"method": "test@v1/big", "params": {"text": text}})
            got = await b.recv()
            assert (got["id"], got["payload"]) == (small, {"method": "test@v1/small", "params": [1]})


@aio
async def test_not_found_when_connected_nowhere(two_workers: GatewayProcess) -> None:
    async with Clients(two_workers) as clients:
        (a,) = await clients.bound("compact")
        msg_id = await a.request(uid("nobody"), "test@v1/hello")
        expect_fail(await a.recv(), "NOT_FOUND", id=msg_id, to=a.cid)
        msg_id = await a.event(uid("nobody"), "test@v1/hello")
        expect_fail(await a.recv(), "NOT_FOUND", id=msg_id, to=a.cid)


@aio
async def test_broadcast_reaches_every_worker_once(two_workers: GatewayProcess) -> None:
    async with Clients(two_workers) as clients:
        a, b = await on_workers(clients, 2)
        others = [await clients.open(form, login=uid("bc")) for form in ("verbose", "compact") * 3]
        everyone = [b, *others]
        for peer in everyone:
            await visible(a, peer)  # every login is known on a's worker
        await drain_messages(a, 0.1)
        msg_id = await a.event("client", "test@v1/news", {"n": 7})
        for peer in everyone:
            got = await peer.recv()
            assert got == {
                "from": a.cid,
                "to": "client",
                "type": "event",
                "id": msg_id,
                "payload": {"method": "test@v1/news", "params": {"n": 7}},
            }, got
        for peer in [a, *everyone]:
            assert await drain_messages(peer, 0.2) == [], "a broadcast arrived twice, or at its sender"


@aio
async def test_timeout_is_decided_on_the_requesters_side(two_workers: GatewayProcess) -> None:
    async with Clients(two_workers) as clients:
        a, b = await on_workers(clients, 2)
        msg_id = await call_when_visible(a, b)
        await b.recv()
        started = time.monotonic()
        expect_fail(await a.recv(10), "TIMEOUT", id=msg_id, to=a.cid)
        assert time.monotonic() - started + 0.3 >= 1.4  # not before its time; how late depends on the machine
        # The late answer crosses back and is dropped: the request already had its one response.
        await b.respond(a.cid, msg_id)
        await settled(b, a)  # b's worker has sent it on; a's worker would deliver it soon after
        await a.silent(0.3)


@aio
async def test_the_same_id_sent_again_after_a_timeout_is_answered(two_workers: GatewayProcess) -> None:
    async with Clients(two_workers) as clients:
        a, b = await on_workers(clients, 2)
        msg_id = await call_when_visible(a, b)
        await b.recv()
        expect_fail(await a.recv(4), "TIMEOUT", id=msg_id, to=a.cid)
        # Not pending any more on a's side: the id may be used again, and this time b answers.
        await a.request(b.cid, "test@v1/hello", {"again": True}, id=msg_id)
        assert (await b.recv())["payload"]["params"] == {"again": True}
        # Answer late enough that b's worker has swept what it owed for the first one.
        await asyncio.sleep(1.1)
        await b.respond(a.cid, msg_id, receipt="second")
        expect_response(await a.recv(), id=msg_id, to=a.cid, frm=b.cid, receipt="second")


@aio
async def test_gone_when_the_remote_target_disconnects(two_workers: GatewayProcess) -> None:
    async with Clients(two_workers) as clients:
        a, b = await on_workers(clients, 2)
        msg_id = await call_when_visible(a, b)
        await b.recv()
        await b.close()
        expect_fail(await a.recv(), "GONE", id=msg_id, to=a.cid)
        msg_id = await a.request(b.cid, "test@v1/hello")
        expect_fail(await a.recv(), "NOT_FOUND", id=msg_id, to=a.cid)


@aio
async def test_duplicate_id_while_pending_across_workers(two_workers: GatewayProcess) -> None:
    async with Clients(two_workers) as clients:
        a, b = await on_workers(clients, 2)
        msg_id = await call_when_visible(a, b)
        await a.request(b.cid, "test@v1/hello", id=msg_id)
        expect_fail(await a.recv(), "DUPLICATE_ID", id=msg_id, to=a.cid)
        assert (await b.recv())["id"] == msg_id
        await b.respond(a.cid, msg_id)
        expect_response(await a.recv(), id=msg_id, to=a.cid, frm=b.cid)
        await settled(a, b)
        await b.silent(0.2)  # a forwarded duplicate would cross NATS


@aio
async def test_login_on_another_worker_replaces_the_older_connection(two_workers: GatewayProcess) -> None:
    async with Clients(two_workers) as clients:
        old, other = await on_workers(clients, 2)
        old_pid = await where(old)
        # Log in again as old's id until the new connection lands on the other worker.
        for _attempt in range(30):
            await visible(other, old)  # old's login is known everywhere
            newer = await clients.open("compact", login=old.cid)
            code, _ = await close_code(old.ws)
            assert code == 4001
            newer_pid = await where(newer)
            if newer_pid != old_pid:
                break
            old, old_pid = newer, newer_pid
        else:
            raise AssertionError("every new connection landed on the same worker")
        # The id now lives on the newer connection's worker, for clients on either worker.
        await relay_round_trip(other, newer)


@aio
async def test_server_api_reaches_clients_on_other_workers(two_workers: GatewayProcess) -> None:
    async with Clients(two_workers) as clients:
        a, b = await on_workers(clients, 2)
        await visible(a, b)
        # a's worker asks b (on the other worker) through send_request, and gets b's answer.
        ask_id = await a.request("server", "cluster@v1/ask", {"target": b.cid, "method": "test@v1/q"})
        question = await b.recv()
        assert question["from"] == "server" and question["type"] == "request", question
        assert question["payload"] == {"method": "test@v1/q"}
        await b.respond("server", question["id"], "success", receipt="yes", data=[1, 2])
        expect_response(
            await a.recv(), id=ask_id, to=a.cid, data={"result": "success", "receipt": "yes", "data": [1, 2]}
        )
        # send_event and broadcast reach b too.
        tell_id = await a.request("server", "cluster@v1/tell", {"target": b.cid, "method": "test@v1/told"})
        expect_response(await a.recv(), id=tell_id, to=a.cid)
        told = await b.recv()
        assert (told["from"], told["to"], told["type"]) == ("server", b.cid, "event"), told
        assert told["payload"] == {"method": "test@v1/told"}
        announce_id = await a.request("server", "cluster@v1/announce", {"method": "test@v1/all", "params": [3]})
        messages = await drain_messages(a, 0.5)
        assert {m["type"] for m in messages} == {"response", "event"}, messages
        response = next(m for m in messages if m["type"] == "response")
        assert response["id"] == announce_id and response["payload"]["result"] == "success"
        for peer in (a, b):
            events = [m for m in ([*messages] if peer is a else await drain_messages(b, 0.5)) if m["type"] == "event"]
            assert [(e["from"], e["to"], e["payload"]) for e in events] == [
                ("server", "client", {"method": "test@v1/all", "params": [3]})
            ], events
        # A client gone from every worker: NOT_FOUND from the API, as a code the handler reports.
        ask_id = await a.request("server", "cluster@v1/ask", {"target": uid("none"), "method": "test@v1/q"})
        expect_response(await a.recv(), id=ask_id, to=a.cid, data={"error": "NOT_FOUND"})


def test_reject_mode_refuses_a_login_held_on_another_worker() -> None:
    @aio
    async def check(server: GatewayProcess) -> None:
        async with Clients(server) as clients:
            held, other = await on_workers(clients, 2)
            pid_held = await where(held)
            await visible(other, held)
            # Refused on either worker; after the refusal the connection logs in as itself to say where it is.
            for _attempt in range(30):
                newer = await clients.open("verbose")
                reply = await newer.login(held.cid)
                assert reply["payload"] == {"result": "fail", "code": "CONFLICT"}, reply
                await newer.login(uid("else"))
                if await where(newer) != pid_held:
                    break
            else:
                raise AssertionError("every new connection landed on the held id's worker")
            await held.ping()

    with gateway("--workers", "2", "--duplicate-login", "reject") as server:
        check(server)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_drains_every_worker_and_exits_zero(signum: int) -> None:
    @aio
    async def check(server: GatewayProcess) -> None:
        async with Clients(server) as clients:
            a, b = await on_workers(clients, 2)
            msg_id = await call_when_visible(a, b)
            await b.recv()
            server.signal(signum)
            assert await asyncio.to_thread(server.wait_for_log, "stopping: draining", 10, 2)  # both workers
            # New requests are refused while draining.
            late = await a.request("server", "wsa@v1/ping")
            expect_fail(await a.recv(), "UNAVAILABLE", id=late, to=a.cid)
            # In flight across workers: b's worker waits for b's answer, which still reaches a.
            await b.respond(a.cid, msg_id)
            expect_response(await a.recv(), id=msg_id, to=a.cid, frm=b.cid)
            for peer in (a, b):
                code, _ = await close_code(peer.ws, 5)
                assert code == 1001

    with gateway("--workers", "2") as server:
        check(server)
        assert server.wait(15) == 0
        assert server.log.count("wsa_fast.server: stopped") == 2, server.log


# ---------------------------------------------------------------- separate nodes on NATS


@aio
async def test_two_nodes_on_one_nats_are_one_gateway(two_nodes: tuple[GatewayProcess, GatewayProcess]) -> None:
    one, two = two_nodes
    async with Clients(one) as on_one, Clients(two) as on_two:
        a = await on_one.open("verbose", login=uid("n1"))
        b = await on_two.open("compact", login=uid("n2"))
        c = await on_two.open("verbose", login=uid("n2"))
        await relay_round_trip(a, b)
        await relay_round_trip(c, a)
        msg_id = await a.event("client", "test@v1/news")
        for peer in (b, c):
            assert (await peer.recv())["id"] == msg_id
        msg_id = await b.request(uid("nobody"), "test@v1/hello")
        expect_fail(await b.recv(), "NOT_FOUND", id=msg_id, to=b.cid)


def test_a_target_the_gateway_closes_is_gone_at_once_for_requesters_on_other_nodes(nats: NatsServer) -> None:
    """b's node closes b for too many invalid messages while a request from another node waits on it: the
    requester gets GONE then, as one on b's node would, not when b's closing handshake ends (up to 5 s if b
    does not read: after the requester's 2 s TIMEOUT)."""
    with gateway("--nats", nats.url, "--request-timeout", "2") as one, gateway("--nats", nats.url) as two:

        @aio
        async def check() -> None:
            async with Clients(one) as on_one, Clients(two) as on_two:
                a = await on_one.open("compact", login=uid("ga"))
                b = await on_two.open("verbose", login=uid("gb"))
                msg_id = await call_when_visible(a, b)
                assert (await b.recv())["id"] == msg_id
                b.ws.transport.pause_reading()  # it does not see its 1008, so it does not answer it
                for _ in range(20):  # max_bad_messages
                    await b.send_raw("{")
                expect_fail(await a.recv(), "GONE", id=msg_id, to=a.cid)
                b.ws.transport.resume_reading()
                assert (await close_code(b.ws))[0] == 1008
                await settled(a)  # exactly one answer

        check()


def publish_raw(nats_url: str, subject: str, payload: bytes) -> None:
    """One NATS message from outside the gateway, over a plain socket, acknowledged by a PONG."""
    host, port = nats_url.removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.recv(4096)  # INFO
        sock.sendall(
            b'CONNECT {"verbose":false}\r\nPUB %s %d\r\n%s\r\nPING\r\n' % (subject.encode(), len(payload), payload)
        )
        answer = b""
        while b"PONG" not in answer:
            answer += sock.recv(4096)


def record(body: bytes, tag: bytes = b"M") -> bytes:
    return tag + struct.pack("<I", len(body)) + body


@aio
async def test_malformed_records_are_dropped_and_routing_goes_on(
    nats: NatsServer, two_nodes: tuple[GatewayProcess, GatewayProcess]
) -> None:
    one, two = two_nodes
    event = b"\x03\x00\x00\x00\x00"  # type, from and to kinds, result, flags
    empty = struct.pack("<8I", *[0] * 8)  # eight empty fields (each a 4-byte length)
    batch = b"".join(
        [
            record(b"\x03\x00"),  # shorter than the fixed part
            record(b"\x09" + event[1:] + empty),  # no such message type
            record(event + struct.pack("<I", 1000) + empty[4:]),  # a field of 1,000 bytes past the end
            record(event + empty + b"extra"),  # bytes after the last field
        ]
    )
    publish_raw(nats.url, "wsa.all", batch)
    for node in (one, two):
        deadline = time.monotonic() + 10
        while node.log.count("dropping an unreadable record") < 4:  # the batch's four records, each logged
            assert time.monotonic() < deadline, node.log
            await asyncio.sleep(0.01)
        assert node.log.count("dropping an unreadable record") == 4, node.log
    async with Clients(one) as on_one, Clients(two) as on_two:
        a = await on_one.open("verbose", login=uid("n1"))
        b = await on_two.open("compact", login=uid("n2"))
        await relay_round_trip(a, b)


@aio
async def test_login_on_another_node_replaces_the_older_connection(
    two_nodes: tuple[GatewayProcess, GatewayProcess],
) -> None:
    one, two = two_nodes
    async with Clients(one) as on_one, Clients(two) as on_two:
        old = await on_one.open("verbose", login=uid("dup"))
        watcher = await on_two.open("verbose", login=uid("watch"))
        await visible(watcher, old)
        newer = await on_two.open("compact", login=old.cid)
        code, _ = await close_code(old.ws)
        assert code == 4001
        sender = await on_one.open("verbose", login=uid("s"))
        await relay_round_trip(sender, newer)


def test_a_nats_cluster_of_two_with_one_node_on_each() -> None:
    routes = [free_port(), free_port()]
    with (
        NatsServer(cluster_port=routes[0], routes=[routes[1]], name="n1") as first,
        NatsServer(cluster_port=routes[1], routes=[routes[0]], name="n2") as second,
        gateway("--nats", first.url) as one,
        gateway("--nats", second.url) as two,
    ):

        @aio
        async def check() -> None:
            async with Clients(one) as on_one, Clients(two) as on_two:
                a = await on_one.open("compact", login=uid("c1"))
                b = await on_two.open("verbose", login=uid("c2"))
                await relay_round_trip(a, b)
                await relay_round_trip(b, a)
                msg_id = await b.event("client", "test@v1/news")
                assert (await a.recv())["id"] == msg_id

        check()


def test_nats_credentials_in_the_url_and_a_clear_refusal() -> None:
    with NatsServer(extra=["--user", "gw", "--pass", "s3cret-pw"]) as nats:
        url = f"nats://gw:s3cret-pw@127.0.0.1:{nats.port}"
        with gateway("--nats", url) as one, gateway("--nats", url) as two:

            @aio
            async def check() -> None:
                async with Clients(one) as on_one, Clients(two) as on_two:
                    a = await on_one.open("verbose", login=uid("cred"))
                    b = await on_two.open("compact", login=uid("cred"))
                    await relay_round_trip(a, b)

            check()
        for node in (one, two):
            assert "s3cret-pw" not in node.log, "the NATS password was logged"
        wrong = f"nats://gw:wrong@127.0.0.1:{nats.port}"
        with pytest.raises(RuntimeError, match="refused the credentials"):
            gateway("--nats", wrong)


# ---------------------------------------------------------------- faults


def test_a_killed_worker_is_forgotten_and_replaced() -> None:
    @aio
    async def check(server: GatewayProcess) -> None:
        async with Clients(server) as clients:
            a, b = await on_workers(clients, 2)
            victim = await where(b)
            msg_id = await call_when_visible(a, b)
            await b.recv()
            os.kill(victim, signal.SIGKILL)
            # The request pending on the dead worker's client ends with GONE, not silence.
            expect_fail(await a.recv(DEATH_WAIT), "GONE", id=msg_id, to=a.cid)
            probe = await a.request(b.cid, "test@v1/hello")
            expect_fail(await a.recv(), "NOT_FOUND", id=probe, to=a.cid)
            assert server.wait_for_log("restarted", 10), server.log
            # b reconnects (to whichever worker) and is reachable again.
            b2 = await clients.open("compact", login=b.cid)
            await relay_round_trip(a, b2)
            # Both workers serve again: one of them is the new process.
            pids = {await where(await clients.open("verbose", login=uid("p"))) for _ in range(30)}
            assert victim not in pids and len(pids) == 2, pids

    with GatewayProcess("--workers", "2", "--app", APP, allow_tracebacks=False) as server:
        check(server)
    assert "was killed by SIGKILL" in server.log


def test_a_worker_restarted_while_broadcasts_flow_handles_them_from_its_first_read() -> None:
    """A restarted worker subscribes before its NATS handshake ends: broadcast batches that arrive meanwhile
    are handled (they once raised AttributeError in the router and killed the worker's NATS link)."""

    @aio
    async def check(server: GatewayProcess) -> None:
        async with Clients(server) as clients:
            a, b = await on_workers(clients, 2)
            victim = await where(b)
            flooding = True

            async def flood() -> None:
                n = 0
                while flooding:
                    await a.event("client", "test@v1/news", {"n": n})
                    n += 1
                    await asyncio.sleep(0)

            task = asyncio.create_task(flood())
            os.kill(victim, signal.SIGKILL)
            joined = await asyncio.to_thread(server.wait_for_log, "joined the cluster", 15, 3)
            flooding = False
            await task
            assert joined, server.log
            assert "AttributeError" not in server.log and "Fatal error" not in server.log, server.log
        # The restarted worker serves across the cluster: a client on it and one on the survivor talk.
        async with Clients(server) as clients:
            first, second = await on_workers(clients, 2)
            assert victim not in {await where(first), await where(second)}
            await visible(first, second)
            await relay_round_trip(first, second)
            await relay_round_trip(second, first)

    with GatewayProcess("--workers", "2", "--app", APP, "--limits", "off", allow_tracebacks=False) as server:
        check(server)


def test_nats_restart_loses_no_answer_and_delivers_nothing_twice() -> None:
    """Requests flow from node one to node two while NATS goes down and comes back."""
    with (
        NatsServer() as nats,
        gateway("--nats", nats.url, "--request-timeout", "1") as one,
        gateway("--nats", nats.url) as two,
    ):

        @aio
        async def check() -> None:
            async with Clients(one) as on_one, Clients(two) as on_two:
                a = await on_one.open("verbose", login=uid("ra"))
                b = await on_two.open("compact", login=uid("rb"))
                first = await call_when_visible(a, b)
                seen: list[str] = []
                answers: dict[str, list[str]] = {}

                async def answer() -> None:
                    while True:
                        message = await b.recv(30)
                        seen.append(message["id"])
                        await b.respond(a.cid, message["id"])

                async def collect() -> None:
                    while True:
                        reply = await a.recv(30)
                        answers.setdefault(reply["id"], []).append(
                            reply["payload"].get("code", reply["payload"]["result"])
                        )

                tasks = [asyncio.ensure_future(answer()), asyncio.ensure_future(collect())]
                sent: list[tuple[float, str]] = [(time.monotonic(), first)]

                async def send_for(seconds: float) -> None:
                    end = time.monotonic() + seconds
                    while time.monotonic() < end:
                        msg_id = new_id()
                        sent.append((time.monotonic(), msg_id))
                        await a.request(b.cid, "test@v1/hello", {"i": len(sent)}, id=msg_id)
                        await asyncio.sleep(0.02)

                await send_for(1.0)
                nats.stop()
                await send_for(1.0)
                nats.start()
                restarted = time.monotonic()
                await send_for(6.0)
                # Each request is answered by request_timeout after it went (TIMEOUT at the latest), later on a
                # loaded machine: wait for every answer, then a request_timeout more for any second one.
                await until_answered(answers, [msg_id for _, msg_id in sent])
                await asyncio.sleep(1.0)
                for task in tasks:
                    task.cancel()

                for _, msg_id in sent:
                    assert len(answers.get(msg_id, [])) == 1, (msg_id, answers.get(msg_id))
                assert len(seen) == len(set(seen)), "a request was delivered twice"
                outcomes = {answers[msg_id][0] for _, msg_id in sent}
                assert outcomes <= {"success", "UNAVAILABLE", "TIMEOUT"}, outcomes
                resumed = [t for t, msg_id in sent if t > restarted and answers[msg_id][0] == "success"]
                assert resumed and resumed[0] - restarted < 5.0, "routing did not resume within 5 s"
                last = [answers[msg_id][0] for t, msg_id in sent if t > restarted + 5.0]
                assert last and set(last) == {"success"}, last

        check()


def test_requests_are_refused_at_once_when_nats_stops_reading() -> None:
    """nats-server stops reading (SIGSTOP): once 64 MiB wait unsent, batches are not written and each
    request in them is answered UNAVAILABLE; every request gets exactly one answer."""
    with (
        NatsServer() as nats,
        gateway("--nats", nats.url, "--limits", "off", "--request-timeout", "2") as one,
        gateway("--nats", nats.url) as two,
    ):

        @aio
        async def check() -> None:
            async with Clients(one) as on_one, Clients(two) as on_two:
                a = await on_one.open("compact", login=uid("sa"))
                b = await on_two.open("compact", login=uid("sb"))
                await visible(a, b)
                assert nats.proc is not None
                os.kill(nats.proc.pid, signal.SIGSTOP)
                try:
                    # 90 MB: more than the sockets hold and the 64 MiB the client lets wait unsent.
                    sent = [await a.request(b.cid, "test@v1/hello", {"text": "x" * 900_000}) for _ in range(100)]
                    answers: dict[str, list[str]] = {}
                    while sum(map(len, answers.values())) < len(sent):
                        reply = await a.recv(10)
                        answers.setdefault(reply["id"], []).append(reply["payload"]["code"])
                finally:
                    os.kill(nats.proc.pid, signal.SIGCONT)
                assert sorted(answers) == sorted(sent)
                assert all(len(codes) == 1 for codes in answers.values()), answers
                codes = [codes[0] for codes in answers.values()]
                # Those that went wait for b's answer until the timeout (GONE if b's worker is taken for
                # dead first: its presence does not get through either).
                assert "UNAVAILABLE" in codes and set(codes) <= {"UNAVAILABLE", "TIMEOUT", "GONE"}, codes
                assert "the NATS server is not keeping up" in one.log, one.log

        check()


def test_the_embedded_nats_server_is_restarted_and_routing_resumes() -> None:
    @aio
    async def check(server: GatewayProcess) -> None:
        async with Clients(server) as clients:
            a, b = await on_workers(clients, 2)
            await relay_round_trip(a, b)
            nats_pid = int(server.log.split("embedded nats-server (pid ")[1].split(")")[0])
            os.kill(nats_pid, signal.SIGKILL)
            assert server.wait_for_log("embedded nats-server restarted", 10), server.log
            # The supervisor's waitpid(-1) must not hide how it died (it once said "exited with 0").
            assert "the embedded nats-server was killed by SIGKILL; restarting it" in server.log, server.log
            # Both workers reconnect on their own and route again within seconds.
            deadline = time.monotonic() + PRESENCE_WAIT
            while True:
                msg_id = await a.request(b.cid, "test@v1/hello")
                who, message = await first_message(a, b)  # refused, or delivered
                if who is b:
                    break
                expect_fail(message, "UNAVAILABLE", id=msg_id, to=a.cid)
                assert time.monotonic() < deadline, "routing did not resume"
                await asyncio.sleep(0.01)  # back off as a client would: a tight loop meets the rate limit
            assert message["id"] == msg_id
            await b.respond(a.cid, msg_id)
            expect_response(await a.recv(), id=msg_id, to=a.cid, frm=b.cid)
            await relay_round_trip(b, a)

    with gateway("--workers", "2") as server:
        check(server)
