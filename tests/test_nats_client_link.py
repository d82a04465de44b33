"""wsa_fast's NATS client when the server misbehaves on a real socket: a connection that ends during the
handshake (CONNECT, PING, PONG) is not one to use, and flush() gives up on a server that stops answering.

A scripted server on a loopback socket plays NATS's side of the first connection; every later connection
is piped to a real nats-server, so the client's recovery is checked end to end.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import uvloop
from nats_server import NatsServer

from wsa_fast.nats_client import NatsClient, parse_servers

INFO = b'INFO {"server_id":"scripted","version":"2.10.0","proto":1,"max_payload":1048576}\r\n'
PING = b"PING\r\n"
PONG = b"PONG\r\n"
CONNECT_TIMEOUT = 20.0  # connect()'s own bound: a client that hangs fails here, not at pytest's timeout

Script = Callable[[socket.socket], None]


def read_until(conn: socket.socket, marker: bytes, seen: bytes = b"") -> bytes:
    """Read until ``marker`` has arrived; what came so far (b"" if the client closed first)."""
    while marker not in seen:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        seen += chunk
    return seen


def pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
        sink.shutdown(socket.SHUT_WR)
    except OSError:  # the other direction closed both
        pass


class ScriptedNats:
    """Listens on loopback: its first connection runs ``script``, every later one is piped to ``upstream``."""

    def __init__(self, script: Script, upstream: NatsServer | None = None) -> None:
        self.script = script
        self.upstream = upstream
        self.connections = 0
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # how often the accept loop looks at `stopping`
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            self.sockets.append(conn)
            self.connections += 1
            if self.connections == 1:
                self._spawn(self.script, conn)
                continue
            assert self.upstream is not None, "a second connection to a server that has only a script"
            upstream = socket.create_connection(("127.0.0.1", self.upstream.port))
            self.sockets.append(upstream)
            self._spawn(pipe, conn, upstream)
            self._spawn(pipe, upstream, conn)

    def close(self) -> None:
        self.stopping.set()
        self.threads[0].join()
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
            except OSError:
                pass
            sock.close()
        for thread in self.threads[1:]:
            thread.join(5)


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


# ---------------------------------------------------------------- a connection lost during the handshake


def close_after_info(conn: socket.socket) -> None:
    conn.sendall(INFO)
    conn.close()


def close_before_pong(conn: socket.socket) -> None:
    """Takes CONNECT and PING, then closes: the handshake is not over."""
    conn.sendall(INFO)
    read_until(conn, PING)
    conn.close()


def close_with_pong(conn: socket.socket) -> None:
    """Answers the handshake's PING and closes in the same segment (corked: PONG and FIN arrive together),
    so the client reads its PONG and the end of the connection in one go."""
    conn.sendall(INFO)
    read_until(conn, PING)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    conn.sendall(PONG)
    conn.close()


@pytest.mark.parametrize("script", [close_after_info, close_before_pong, close_with_pong])
def test_a_connection_lost_during_the_handshake_is_retried(nats: NatsServer, script: Script, caplog) -> None:
    """connect() does not take the lost connection for a working one: it connects again (piped through to
    the real server), and its subscription then gets another client's message; nothing above INFO is logged."""
    server = ScriptedNats(script, nats)
    ups: list[bool] = []

    async def main() -> list[bytes]:
        got: list[bytes] = []
        arrived = asyncio.get_running_loop().create_future()

        def on_message(payload: bytes, reply: bytes | None) -> None:
            got.append(payload)
            if not arrived.done():
                arrived.set_result(None)

        client = NatsClient(parse_servers(server.url), "scripted", on_up=ups.append)
        client.subscribe(b"t.link", on_message)
        sender = NatsClient(parse_servers(nats.url), "sender")
        try:
            await client.connect(CONNECT_TIMEOUT)
            assert client.connected
            # A PING answered over the connection in use: the subscription sent before it is in place.
            assert await client.flush()
            await sender.connect(CONNECT_TIMEOUT)
            assert sender.publish(b"t.link", b"after the retry")
            await arrived
        finally:
            await sender.close()
            await client.close()
        return got

    caplog.set_level(logging.DEBUG, logger="wsa_fast.nats")
    try:
        got = uvloop.run(main())
    finally:
        server.close()
    assert got == [b"after the retry"]
    assert server.connections >= 2  # the scripted one, then one piped to the real server
    assert ups == [False]  # up once: when the handshake over a working connection ended
    assert not [r for r in caplog.records if r.levelno > logging.INFO], caplog.text


# ---------------------------------------------------------------- flush() against a server that stops answering


class Quiet:
    """Answers the handshake, then takes PINGs without answering them until ``answer`` is set; from then
    on answers each one, the ones it kept first."""

    def __init__(self) -> None:
        self.answer = threading.Event()
        self.pings_kept = threading.Semaphore(0)  # released once per PING kept unanswered

    def __call__(self, conn: socket.socket) -> None:
        conn.sendall(INFO)
        rest = read_until(conn, PING).split(PING, 1)[1]
        conn.sendall(PONG)
        kept = 0
        while True:
            while PING not in rest:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                rest += chunk
            rest = rest.split(PING, 1)[1]
            if self.answer.is_set():
                conn.sendall(PONG * (kept + 1))
                kept = 0
            else:
                kept += 1
                self.pings_kept.release()


FLUSH_TIMEOUT = 0.2


def test_flush_gives_up_on_a_server_that_stops_answering(caplog) -> None:
    """flush() returns False once its timeout has passed without a PONG, and the link stays up; once the
    server answers again, its late PONG is passed over and the next flush() gets its own."""
    quiet = Quiet()
    server = ScriptedNats(quiet)

    async def main() -> tuple[bool, float, bool]:
        loop = asyncio.get_running_loop()
        client = NatsClient(parse_servers(server.url), "flusher")
        try:
            await client.connect(CONNECT_TIMEOUT)
            started = loop.time()
            unanswered = await client.flush(timeout=FLUSH_TIMEOUT)
            waited = loop.time() - started
            assert client.connected
            # The server has the PING, not answered: it is the server that stopped, not the client that never sent.
            assert await asyncio.to_thread(quiet.pings_kept.acquire, timeout=10)
            quiet.answer.set()
            answered = await client.flush(timeout=CONNECT_TIMEOUT)
            assert client.connected
            return unanswered, waited, answered
        finally:
            await client.close()

    caplog.set_level(logging.DEBUG, logger="wsa_fast.nats")
    try:
        unanswered, waited, answered = uvloop.run(main())
    finally:
        server.close()
    assert unanswered is False
    assert waited >= FLUSH_TIMEOUT - 0.001  # not before its time (libuv's timers count whole milliseconds)
    assert answered is True
    assert server.connections == 1
    assert not [r for r in caplog.records if r.levelno > logging.INFO], caplog.text
