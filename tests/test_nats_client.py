"""wsa_fast's NATS client against a real nats-server: what it reads arrives whole, in order, once.

The reader (NatsReader, compiled) parses MSG lines in C from one reused buffer that grows for a
large message and keeps a message cut across reads: every size here crosses some read boundary.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
import uvloop
from nats_server import NatsServer

from wsa_fast.nats_client import NatsClient, parse_servers

# Around the reader's 256 KiB starting buffer and its 64 KiB minimum read room; below nats-server's 1 MiB max_payload.
SIZES = [0, 1, 2, 100, 4095, 65535, 65536, 65537, 200_000, 262_143, 262_144, 262_145, 700_000, 3, 1_000_000, 0, 17]


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsServer]:
    server = NatsServer()
    yield server
    server.stop()


def test_messages_of_every_size_arrive_whole_and_in_order(nats: NatsServer) -> None:
    payloads = [os.urandom(size) for size in SIZES]

    async def main() -> list[tuple[bytes, bytes | None]]:
        got: list[tuple[bytes, bytes | None]] = []
        done = asyncio.get_running_loop().create_future()

        def on_message(payload: bytes, reply: bytes | None) -> None:
            got.append((payload, reply))
            if len(got) == 2 * len(payloads) and not done.done():
                done.set_result(None)

        receiver = NatsClient(parse_servers(nats.url), "receiver")
        receiver.subscribe(b"t.data", on_message)
        await receiver.connect(5.0)
        sender = NatsClient(parse_servers(nats.url), "sender")
        await sender.connect(5.0)
        assert await receiver.flush()  # the subscription is in place
        for payload in payloads:  # written in one go: many messages per read, and messages cut across reads
            assert sender.publish(b"t.data", payload, b"t.reply")
            assert sender.publish(b"t.data", payload)
        await asyncio.wait_for(done, 30)
        await sender.close()
        await receiver.close()
        return got

    got = uvloop.run(main())
    expected = [pair for payload in payloads for pair in ((payload, b"t.reply"), (payload, None))]
    assert [(len(p), r) for p, r in got] == [(len(p), r) for p, r in expected]
    assert got == expected
