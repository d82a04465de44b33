"""``GET /metrics``: Prometheus text that moves exactly as the traffic a test sends.

Every test scrapes before and after its traffic and compares the difference of every
series with what it sent, so a counter that moves when it should not fails too. With
``--workers 2`` the answer covers the whole node whichever worker takes the scrape.
Debian's ``promtool check metrics`` (installed when missing) must accept the output.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
from apt import find_binary, install
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from wsa_ws import Clients, aio, expect_fail, http_get, uid

ECHO_APP = "tests.apps.echo_app:app"
# A gauge that other workers refresh (pending requests) is this stale at most.
SCRAPE_PATIENCE = 10.0

Metrics = dict[str, float]


def find_promtool() -> str | None:
    return find_binary("promtool", "/usr/bin/promtool")


@pytest.fixture(scope="session")
def promtool() -> str:
    return find_promtool() or install("promtool", ("prometheus",), find_promtool)


def scrape(server, context=None) -> tuple[str, Metrics]:
    status, body = http_get(server, "/metrics", context=context)
    assert status == 200, body
    text = body.decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            values[series] = float(value)
    return text, values


def delta(before: Metrics, after: Metrics) -> Metrics:
    """The series that changed, and by how much."""
    assert before.keys() == after.keys(), set(before) ^ set(after)
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def wait_for(server, series: str, value: float) -> Metrics:
    """Scrape until ``series`` reads ``value`` (it follows a disconnect or a gauge refresh)."""
    deadline = time.monotonic() + SCRAPE_PATIENCE
    while True:
        _, now = scrape(server)
        if now[series] == value or time.monotonic() > deadline:
            assert now[series] == value, (series, now[series], value)
            return now
        time.sleep(0.02)


async def deliver(peer, target) -> int:
    """Send ``target`` an event until it arrives; returns how many were answered NOT_FOUND first (a
    login on another worker takes a few milliseconds to be known here)."""
    misses = 0
    while True:
        await peer.event(target.cid, "chat@v1/next")
        arrival, bounce = asyncio.ensure_future(target.recv()), asyncio.ensure_future(peer.recv())
        done, _ = await asyncio.wait({arrival, bounce}, return_when=asyncio.FIRST_COMPLETED)
        if arrival in done:
            bounce.cancel()
            assert arrival.result()["payload"]["method"] == "chat@v1/next", arrival.result()
            return misses
        arrival.cancel()
        assert bounce.result()["payload"] == {"result": "fail", "code": "NOT_FOUND"}, bounce.result()
        misses += 1
        await asyncio.sleep(0.02)


def test_promtool_accepts_the_output_after_traffic(start_gateway, promtool):
    server = start_gateway(app=ECHO_APP)

    @aio
    async def traffic():
        async with Clients(server) as cl:
            a = await cl.open(login=uid("prom"))
            await a.call("server", "echo@v1/echo", {"x": 1})
            await a.call("server", "echo@v1/fail", {"code": "TEAPOT"})

    traffic()
    text, values = scrape(server)
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert values['wsa_handler_duration_seconds_count{method="echo@v1/echo"}'] == 1
    assert values['wsa_handler_duration_seconds_bucket{method="echo@v1/echo",le="+Inf"}'] == 1
    assert values['wsa_handler_duration_seconds_count{method="echo@v1/fail"}'] == 1


def test_every_series_moves_exactly_with_the_traffic(start_gateway):
    server = start_gateway("--duplicate-login", "reject", app=ECHO_APP)
    _, before = scrape(server)
    a_id, b_id, c_id = uid("ma"), uid("mb"), uid("mc")

    @aio
    async def traffic():
        async with Clients(server) as cl:
            a = await cl.open("verbose")
            b = await cl.open("verbose")
            c = await cl.open("compact")
            await a.ping()  # anonymous ping
            for peer, cid in ((a, a_id), (b, b_id), (c, c_id)):
                assert (await peer.login(cid))["payload"]["result"] == "success"
            intruder = await cl.open("compact")
            reply = await intruder.login(a_id)  # rejected duplicate: a failed login
            assert reply["payload"] == {"result": "fail", "code": "CONFLICT"}, reply

            request_id = await a.request(b_id, "chat@v1/ask", {"q": 1})  # relayed request...
            assert (await b.recv())["id"] == request_id
            _, pending = await asyncio.to_thread(scrape, server)
            assert pending["wsa_pending_requests"] == before["wsa_pending_requests"] + 1
            await b.respond(a_id, request_id)  # ...and its response
            assert (await a.recv())["id"] == request_id
            await a.event(c_id, "chat@v1/note")  # relayed event
            assert (await c.recv())["payload"]["method"] == "chat@v1/note"
            await a.event("client", "chat@v1/all")  # a broadcast reaching b and c
            assert (await b.recv())["payload"]["method"] == "chat@v1/all"
            assert (await c.recv())["payload"]["method"] == "chat@v1/all"
            await a.call("server", "echo@v1/echo", {"x": 1})  # an app handler
            reply = await a.call(uid("nobody"), "chat@v1/ask")  # NOT_FOUND
            expect_fail(reply, "NOT_FOUND", id=reply["id"], to=a_id)
            reply = await a.call("server", "echo@v1/fail", {"code": "TEAPOT"})  # an app's own code
            assert reply["payload"] == {"result": "fail", "code": "TEAPOT"}, reply
            await a.send_raw("not json")  # unreadable: a wsa@v1/error event
            assert (await a.recv())["payload"]["method"] == "wsa@v1/error"
            await intruder.close()
            # The intruder's close reaches the server after the client returns: wait for the gauge.
            return await asyncio.to_thread(
                wait_for, server, 'wsa_connections{form="compact"}', before['wsa_connections{form="compact"}'] + 1
            )

    changed = delta(before, traffic())
    histogram = {k: v for k, v in changed.items() if k.startswith("wsa_handler_duration_seconds")}
    for k in histogram:
        del changed[k]
    assert changed == {
        'wsa_connections{form="verbose"}': 2,
        'wsa_connections{form="compact"}': 1,
        'wsa_connections_accepted_total{form="verbose"}': 2,
        'wsa_connections_accepted_total{form="compact"}': 2,
        'wsa_logins_total{result="success"}': 3,
        'wsa_logins_total{result="fail"}': 1,
        # ping, 4 logins, relayed request, echo, NOT_FOUND request, fail request
        'wsa_messages_in_total{type="request"}': 9,
        'wsa_messages_in_total{type="response"}': 1,
        'wsa_messages_in_total{type="event"}': 2,
        'wsa_messages_in_total{type="invalid"}': 1,
        'wsa_messages_out_total{type="request"}': 1,
        # 8 from the server (ping, logins, echo, fails) and b's relayed response
        'wsa_messages_out_total{type="response"}': 9,
        # the relayed event, two broadcast copies, the error event
        'wsa_messages_out_total{type="event"}': 4,
        'wsa_fails_total{code="CONFLICT"}': 1,
        'wsa_fails_total{code="NOT_FOUND"}': 1,
        'wsa_fails_total{code="other"}': 1,
        'wsa_relays_total{where="local"}': 2,
        'wsa_broadcasts_total{origin="client"}': 1,
        "wsa_broadcast_deliveries_total": 2,
    }, changed
    assert histogram['wsa_handler_duration_seconds_count{method="echo@v1/echo"}'] == 1
    assert histogram['wsa_handler_duration_seconds_count{method="echo@v1/fail"}'] == 1
    assert histogram['wsa_handler_duration_seconds_sum{method="echo@v1/echo"}'] > 0


def test_two_workers_answer_for_the_whole_node(start_gateway):
    """Clients land on both workers (the kernel spreads them); every scrape, whichever worker
    answers it, counts all of them."""
    server = start_gateway("--workers", "2")
    _, before = scrape(server)
    clients = 8
    ids = [uid("mw") for _ in range(clients)]

    @aio
    async def traffic():
        async with Clients(server) as cl:
            peers = [await cl.open(login=cid) for cid in ids]
            for peer in peers:
                await peer.ping()
            # Each client sends an event to the next: on the same worker or across NATS.
            misses = 0
            for peer, target in zip(peers, peers[1:] + peers[:1]):
                misses += await deliver(peer, target)
            for _ in range(6):
                _, now = await asyncio.to_thread(scrape, server)
                moved = delta(before, now)
                assert moved['wsa_connections{form="verbose"}'] == clients, moved
                assert moved['wsa_logins_total{result="success"}'] == clients, moved
                assert moved['wsa_messages_in_total{type="request"}'] == 2 * clients, moved
                assert moved['wsa_messages_in_total{type="event"}'] == clients + misses, moved
                assert moved['wsa_messages_out_total{type="event"}'] == clients, moved
                assert moved['wsa_messages_out_total{type="response"}'] == 2 * clients + misses, moved
                assert moved.get('wsa_fails_total{code="NOT_FOUND"}', 0) == misses, moved
                relays = moved.get('wsa_relays_total{where="local"}', 0) + moved.get(
                    'wsa_relays_total{where="remote"}', 0
                )
                assert relays == clients, moved
                assert now["wsa_nats_connected"] == 2, now

    traffic()


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    "flags, status, reason",
    [
        (("--max-connections", "2"), 503, "max_connections"),
        (("--max-connections-per-ip", "2"), 429, "max_connections_per_ip"),
        (("--allowed-origins", "https://good.example"), 403, "origin"),
    ],
)
def test_refused_upgrades_are_counted_by_reason(start_gateway, workers, flags, status, reason):
    """Every upgrade refused at a limit or for its Origin is one count, whichever worker refused it."""
    server = start_gateway("--workers", workers, *flags)
    _, before = scrape(server)
    attempts = 12

    @aio
    async def traffic() -> int:
        admitted, refused = [], 0
        for _ in range(attempts):
            try:
                admitted.append(
                    await connect(server.url, origin="https://evil.example" if reason == "origin" else None)
                )
            except InvalidStatus as error:
                assert error.response.status_code == status
                refused += 1
        for ws in admitted:
            await ws.close()
        return refused

    refused = traffic()
    # Each worker admits two (of its own) before refusing; the origin is refused every time.
    assert refused >= attempts - 2 * int(workers)
    _, after = scrape(server)
    assert delta(before, after).get(f'wsa_upgrades_refused_total{{reason="{reason}"}}') == refused
    assert {k for k in delta(before, after) if k.startswith("wsa_upgrades_refused_total")} == {
        f'wsa_upgrades_refused_total{{reason="{reason}"}}'
    }
