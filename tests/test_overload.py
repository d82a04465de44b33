"""End to end, overload (docs/protocol.md "Overload"): bursts reach clients that read, and
one sender cannot get other clients disconnected.

The floods run with ``--limits off``: they check the flow control and the slow-consumer
rule, not the rate limits (tests/test_limits.py), which would refuse them first.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from wsa_ws import aio

# Floods of thousands of messages through one and two workers: seconds each.
pytestmark = pytest.mark.slow

PENDING = 60_000
BROADCASTS = 40
BROADCAST_SIZE = 500_000
RECEIVERS = 10


def short_id(prefix: str, n: int) -> str:
    """A 5-character message id (profile: [a-z0-9]{5}): ``prefix`` and ``n`` in base 36."""
    digits = ""
    for _ in range(5 - len(prefix)):
        n, digit = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
    return prefix + digits


async def login(ws, client_id: str) -> None:
    await ws.send(
        json.dumps(
            {
                "from": client_id,
                "to": "server",
                "type": "request",
                "id": "login",
                "payload": {"method": "auth@v1/login"},
            }
        )
    )
    reply = json.loads(await ws.recv())
    assert reply["payload"]["result"] == "success", reply


async def ping(ws, client_id: str, msg_id: str = "ping1") -> dict:
    await ws.send(
        json.dumps(
            {"from": client_id, "to": "server", "type": "request", "id": msg_id, "payload": {"method": "wsa@v1/ping"}}
        )
    )
    return json.loads(await ws.recv())


async def until_reachable(ws, client_id: str, target, target_id: str) -> None:
    """Wait until ``target_id``'s login is known where ``client_id`` is (with --workers 2 it may be elsewhere)."""
    for attempt in range(500):
        await ws.send(
            json.dumps(
                {
                    "from": client_id,
                    "to": target_id,
                    "type": "event",
                    "id": short_id("p", attempt),
                    "payload": {"method": "app@v1/probe"},
                }
            )
        )
        bounce, arrival = asyncio.create_task(ws.recv()), asyncio.create_task(target.recv())
        done, _ = await asyncio.wait({bounce, arrival}, return_when=asyncio.FIRST_COMPLETED)
        if arrival in done:
            bounce.cancel()
            return
        arrival.cancel()
        assert json.loads(bounce.result())["payload"]["code"] == "NOT_FOUND"
        await asyncio.sleep(0.02)
    raise AssertionError(f"{target_id} never became reachable from {client_id}")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_burst_of_gone_answers_reaches_a_requester_that_reads(start_gateway, workers):
    """60,000 requests wait on a target that disconnects: every one gets its GONE."""
    gateway = start_gateway("--limits", "off", "--workers", workers)

    @aio
    async def run() -> None:
        async with connect(gateway.url, max_queue=None) as requester, connect(gateway.url, max_queue=None) as target:
            await login(requester, "requester")
            await login(target, "target")
            await until_reachable(requester, "requester", target, "target")
            sends = asyncio.create_task(send_requests(requester))
            for _ in range(PENDING):
                json.loads(await target.recv())
            await sends
            await target.close()
            answered = set()
            while len(answered) < PENDING:
                reply = json.loads(await requester.recv())
                assert reply["payload"] == {"result": "fail", "code": "GONE"}, reply
                answered.add(reply["id"])
            assert (await ping(requester, "requester"))["payload"]["result"] == "success"

    async def send_requests(ws) -> None:
        for n in range(PENDING):
            await ws.send(
                json.dumps(
                    {
                        "from": "requester",
                        "to": "target",
                        "type": "request",
                        "id": short_id("r", n),
                        "payload": {"method": "app@v1/wait"},
                    }
                )
            )

    run()
    assert "slow" not in gateway.log


@pytest.mark.parametrize("workers", ["1", "2"])
def test_large_broadcasts_do_not_cut_off_receivers_that_read(start_gateway, workers):
    """40 broadcasts of 500 KB back to back reach all 10 receivers, and none is closed."""
    gateway = start_gateway("--limits", "off", "--workers", workers)
    text = "x" * BROADCAST_SIZE

    @aio
    async def run() -> None:
        receivers = [await connect(gateway.url, max_queue=None) for _ in range(RECEIVERS)]
        for n, ws in enumerate(receivers):
            await login(ws, f"receiver{n}")
        async with connect(gateway.url) as sender:
            await login(sender, "sender")
            for n in range(BROADCASTS):
                await sender.send(
                    json.dumps(
                        {
                            "from": "sender",
                            "to": "client",
                            "type": "event",
                            "id": f"b{n:04d}",
                            "payload": {"method": "app@v1/big", "params": {"text": text}},
                        }
                    )
                )
            counts = await asyncio.gather(*(count_broadcasts(ws) for ws in receivers))
            assert counts == [BROADCASTS] * RECEIVERS
            assert (await ping(sender, "sender"))["payload"]["result"] == "success"
        for n, ws in enumerate(receivers):
            assert (await ping(ws, f"receiver{n}"))["payload"]["result"] == "success"
            await ws.close()

    async def count_broadcasts(ws) -> int:
        for n in range(BROADCASTS):
            message = json.loads(await ws.recv())
            assert message["id"] == f"b{n:04d}" and len(message["payload"]["params"]["text"]) == BROADCAST_SIZE
        return BROADCASTS

    run()
    assert "slow" not in gateway.log


FLOOD_BROADCASTS = 100
FLOOD_SIZE = 100_000
FLOOD_RECEIVERS = 10
# Pings a calm client gets answered while the flood is still being delivered, at the least.
ANSWERED_DURING_FLOOD = 5


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_calm_client_is_answered_while_a_flood_of_large_broadcasts_fans_out(start_gateway, workers):
    """While one client floods 100 KB broadcasts to 10 receivers, another client's pings keep being
    answered, one after the other, before the receivers have the whole flood, not after it; every
    receiver gets every broadcast, in order, and nobody is cut off."""
    gateway = start_gateway("--limits", "off", "--workers", workers)
    text = "f" * FLOOD_SIZE

    @aio
    async def run() -> None:
        receivers = [await connect(gateway.url, max_queue=None) for _ in range(FLOOD_RECEIVERS)]
        for n, ws in enumerate(receivers):
            await login(ws, f"receiver{n}")
        sender = await connect(gateway.url)
        await login(sender, "flooder")
        for n, ws in enumerate(receivers):
            await until_reachable(sender, "flooder", ws, f"receiver{n}")
        # Anonymous (a ping needs no login): it receives no broadcast, so nothing queues ahead of its answers.
        calm = await connect(gateway.url)
        received = [0] * FLOOD_RECEIVERS
        counting = [asyncio.create_task(count_broadcasts(ws, received, n)) for n, ws in enumerate(receivers)]

        async def flood() -> None:
            for n in range(FLOOD_BROADCASTS):
                event = {"from": "flooder", "to": "client", "type": "event", "id": f"b{n:04d}"}
                await sender.send(json.dumps({**event, "payload": {"method": "app@v1/big", "params": {"text": text}}}))

        flooding = asyncio.create_task(flood())
        # The flood has begun once a receiver has its first broadcast.
        while not any(received):
            await asyncio.sleep(0.001)
        answered_during_flood, n = 0, 0
        while min(received) < FLOOD_BROADCASTS:
            assert (await ping(calm, "calm", short_id("p", n)))["payload"]["result"] == "success"
            n += 1
            if min(received) < FLOOD_BROADCASTS:
                answered_during_flood += 1
        await flooding
        assert await asyncio.gather(*counting) == [FLOOD_BROADCASTS] * FLOOD_RECEIVERS
        assert answered_during_flood >= ANSWERED_DURING_FLOOD, answered_during_flood
        for ws in [*receivers, calm, sender]:
            await ws.close()

    async def count_broadcasts(ws, received: list[int], index: int) -> int:
        for n in range(FLOOD_BROADCASTS):
            message = json.loads(await ws.recv())
            assert message["id"] == f"b{n:04d}", message["id"]
            received[index] += 1
        return FLOOD_BROADCASTS

    run()
    assert "slow" not in gateway.log
