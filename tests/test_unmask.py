"""Client payloads are unmasked by the gateway's own kernel (wsa_fast/picows_unmask.py), byte for byte.

The kernel handles whole 64-byte blocks and picows the bytes around them, so every length from 0 to
a few blocks (each start and end offset within a block) and some large ones go from one `websockets`
client, which masks each frame with a fresh random key, through the gateway to another.
"""

from __future__ import annotations

import pytest
from wsa_ws import Clients, aio, running_server, settled, uid

# Every byte offset around the first blocks, then sizes across picows's read buffer and up to the limit.
LENGTHS = [*range(0, 300), 1023, 1024, 4095, 4096, 65535, 65536, 65537, 250_000, 600_000]
# ASCII, escapes, and two-, three- and four-byte UTF-8, so a wrong byte anywhere breaks JSON or equality.
ALPHABET = 'abcXYZ019 "\\/\té€😀'


def text_of(length: int) -> str:
    return "".join(ALPHABET[(i * 7 + length) % len(ALPHABET)] for i in range(length))


@pytest.fixture(scope="module")
def server():
    with running_server("--log-level", "debug") as started:
        yield started


def test_the_worker_unmasks_with_the_gateways_kernel(server):
    assert server.wait_for_log("picows unmasks client payloads with the gateway's kernel"), server.log


@aio
async def test_payloads_of_every_length_arrive_unchanged(server):
    async with Clients(server) as clients:
        sender, receiver = await clients.open(login=uid("s")), await clients.open("compact", login=uid("r"))
        for length in LENGTHS:
            sent = text_of(length)
            id = await sender.event(receiver.cid, "test@v1/text", {"text": sent})
            message = await receiver.recv()
            assert message["id"] == id and message["payload"]["params"] == {"text": sent}, length
        await settled(sender, receiver)
