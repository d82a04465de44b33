"""Keepalive over more connections than one tick of the Sweeper visits: it cuts each round into ticks
of a few hundred connections (a round over 19,000 at once stalled the loop), and every silent peer is
still pinged, then closed (1001), while other connections come and go in the middle of its rounds;
the pings and closes due go out a few dozen at a time."""

from __future__ import annotations

import asyncio
import selectors
import socket

from test_limits import open_raw
from test_overload import login, ping
from websockets.asyncio.client import connect
from wsa_ws import aio

PING, CLOSE = 0x9, 0x8
MUTE = 600  # several ticks' worth (frame_gate/sweeper.pyx's GATES_PER_TICK)
CHURN = 200  # connections that close on their own while the rounds run


def frames_until_closed(socks: list[socket.socket]) -> list[list[tuple[int, bytes]]]:
    """The frames (opcode, payload) the server sent each socket until it closed it, read side by side."""
    received = {sock: b"" for sock in socks}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while selector.get_map():
            for key, _ in selector.select():
                try:
                    chunk = key.fileobj.recv(4096)
                except ConnectionResetError:  # the server aborts a dead peer once its CLOSE is out
                    chunk = b""
                if chunk:
                    received[key.fileobj] += chunk
                else:
                    selector.unregister(key.fileobj)
    frames = []
    for sock in socks:
        sock.close()
        data, parsed = received[sock], []
        while len(data) >= 2:  # the server's control frames: unmasked, short
            size = data[1] & 0x7F
            parsed.append((data[0] & 0x0F, data[2 : 2 + size]))
            data = data[2 + size :]
        frames.append(parsed)
    return frames


def test_every_silent_peer_is_pinged_then_closed_while_others_come_and_go(start_gateway):
    gateway = start_gateway("--ping-interval", "0.3", "--ping-timeout", "0.3")

    @aio
    async def run() -> None:
        async with connect(gateway.url, ping_interval=None) as alive:
            await login(alive, "alive")
            mute: list[socket.socket] = []
            leaving: list[socket.socket] = []
            # Connections arrive and leave while rounds run (a round takes 37.5 ms here): the ones that
            # leave are taken out of the round before and after its cursor.
            for n in range(MUTE + CHURN):
                sock = await asyncio.to_thread(open_raw, gateway.port)
                (leaving if n % 3 == 2 and len(leaving) < CHURN else mute).append(sock)
                if n % 2 and leaving:
                    leaving.pop(0).close()
            for sock in leaving:
                sock.close()
            frames = await asyncio.to_thread(frames_until_closed, mute)
            for got in frames:
                opcodes = [opcode for opcode, _ in got]
                assert opcodes[0] == PING and opcodes[-1] == CLOSE, opcodes
                assert int.from_bytes(got[-1][1][:2], "big") == 1001, got
            # websockets answers the pings: as idle as the others, it is still connected.
            assert (await ping(alive, "alive"))["payload"]["result"] == "success"

    run()
