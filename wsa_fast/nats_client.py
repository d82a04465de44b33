"""A minimal NATS core client on the running loop, made for the gateway's batched traffic.

Only what the cluster needs: PUB (with a reply subject naming the sender), SUB with a
synchronous callback per message (no queue, no task per message), PING/PONG liveness,
and reconnection over the configured and discovered servers, re-subscribing each time.
Publishes are written together once per loop iteration (one system call for all of
them). A publish while disconnected, or while the server is not reading fast enough,
returns False at once instead of buffering: the gateway answers such requests itself,
so nothing arrives twice or late after a NATS restart, and memory stays bounded.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from typing import Callable, Optional
from urllib.parse import unquote, urlsplit

__all__ = ["NatsClient", "NatsError", "parse_servers"]

log = logging.getLogger("wsa_fast.nats")

DEFAULT_PORT = 4222
CRLF = b"\r\n"
PING = b"PING\r\n"
PONG = b"PONG\r\n"
# How often the server is pinged, and how many unanswered pings mean it is gone.
PING_INTERVAL = 2.0
MAX_OUTSTANDING_PINGS = 2
CONNECT_TIMEOUT = 2.0
# Pause between rounds over every known server while NATS is unreachable.
RECONNECT_WAIT = 0.25
# Unsent bytes beyond which publishing refuses: the server (or the network to it) is too slow.
MAX_UNSENT = 64 * 1024 * 1024

Callback = Callable[[bytes, Optional[bytes]], None]


class NatsError(Exception):
    pass


class Server:
    __slots__ = ("host", "port", "user", "password", "token")

    def __init__(self, host: str, port: int, user: str | None = None, password: str | None = None,
                 token: str | None = None) -> None:
        self.host, self.port, self.user, self.password, self.token = host, port, user, password, token

    def __repr__(self) -> str:
        return f"nats://{self.host}:{self.port}"


def parse_servers(urls: str) -> list[Server]:
    """``nats://[user:pass@|token@]host[:port][,…]`` -> servers; ValueError names a bad one."""
    servers = []
    for url in (u.strip() for u in urls.split(",")):
        if not url:
            continue
        parts = urlsplit(url if "://" in url else "nats://" + url)
        if parts.scheme != "nats":
            raise ValueError(f"{url!r}: only nats:// URLs are supported (no TLS)")
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"{url!r}: bad port") from None
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        token = None
        if user is not None and password is None:
            user, token = None, user
        servers.append(Server(parts.hostname, port, user, password, token))
    if not servers:
        raise ValueError("no NATS server given")
    return servers


class _Protocol(asyncio.Protocol):
    """One TCP connection to a NATS server; parses what it sends."""

    def __init__(self, client: "NatsClient", server: Server) -> None:
        self.client = client
        self.server = server
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()
        self.connect_sent = False
        # Answered by the PONG to the PING sent after CONNECT: the server took us.
        self.handshake: asyncio.Future = client.loop.create_future()
        # One entry per PING in flight, in order: a future to resolve, or None for a keepalive.
        self.pongs: deque[Optional[asyncio.Future]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        for waiter in (self.handshake, *self.pongs):
            if waiter is not None and not waiter.done():
                waiter.set_exception(NatsError(f"connection closed: {exc}"))
                waiter.exception()      # whoever awaits it still gets it; nobody awaiting is no error
        self.client._lost(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        pos = 0
        end = len(buf)
        client = self.client
        while pos < end:
            eol = buf.find(CRLF, pos)
            if eol < 0:
                break
            if buf.startswith(b"MSG ", pos):
                # MSG <subject> <sid> [reply-to] <#bytes>
                header = bytes(buf[pos + 4:eol]).split()
                size = int(header[-1])
                start = eol + 2
                if end - start < size + 2:
                    break
                payload = bytes(buf[start:start + size])
                pos = start + size + 2
                callback = client.callbacks.get(header[1])
                if callback is not None:
                    try:
                        callback(payload, header[2] if len(header) == 4 else None)
                    except Exception:
                        log.exception("a NATS message handler failed")
                continue
            line = bytes(buf[pos:eol])
            pos = eol + 2
            if line == b"PING":
                self.transport.write(PONG)
            elif line == b"PONG":
                client.outstanding_pings = 0
                waiter = self.pongs.popleft() if self.pongs else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif line.startswith(b"INFO "):
                client._learn(json.loads(line[5:]))
                if not self.connect_sent:
                    client._send_connect(self)
            elif line.startswith(b"-ERR"):
                log.error("NATS server error: %s", line[5:].decode("utf-8", "replace"))
                if not self.handshake.done():
                    self.handshake.set_exception(NatsError(line[5:].decode("utf-8", "replace")))
        del buf[:pos]


class NatsClient:
    """``await connect()``, then ``subscribe``/``publish``; ``on_up``/``on_down`` follow the link."""

    def __init__(self, servers: list[Server], name: str, *, on_up: Callable[[bool], None] = lambda again: None,
                 on_down: Callable[[], None] = lambda: None) -> None:
        self.loop = asyncio.get_running_loop()
        self.servers = list(servers)
        self.name = name
        self.on_up = on_up
        self.on_down = on_down
        self.callbacks: dict[bytes, Callback] = {}
        self.subjects: dict[bytes, bytes] = {}          # sid -> subject, resent on every connection
        self.protocol: Optional[_Protocol] = None
        self.connected = False
        self.closed = False
        self.max_payload = 1048576
        self.outstanding_pings = 0
        self._next_sid = 0
        self._out: list[bytes] = []                       # this loop iteration's publishes
        self._write_scheduled = False
        self._ever_connected = False
        self._reconnector: Optional[asyncio.Task] = None
        self.refused: Optional[NatsError] = None          # a server turned our credentials down
        self._pinger: Optional[asyncio.Task] = None

    async def connect(self, timeout: float) -> None:
        """Connect to the first reachable server; NatsError if none answers within ``timeout``."""
        deadline = self.loop.time() + timeout
        while True:
            if await self._try_all(deadline):
                break
            if self.refused is not None:
                raise self.refused      # wrong credentials do not get better by waiting
            if self.loop.time() >= deadline:
                raise NatsError(f"no NATS server reachable at {', '.join(map(repr, self.servers))}")
            await asyncio.sleep(RECONNECT_WAIT)
        self._pinger = self.loop.create_task(self._ping_loop())

    def subscribe(self, subject: bytes, callback: Callback) -> None:
        self._next_sid += 1
        sid = str(self._next_sid).encode()
        self.callbacks[sid] = callback
        self.subjects[sid] = subject
        if self.connected:
            self.protocol.transport.write(b"SUB %s %s\r\n" % (self.subjects[sid], sid))

    def publish(self, subject: bytes, payload: bytes, reply: bytes = b"") -> bool:
        """Queue one message for this loop iteration's write; False (nothing sent) if it cannot go."""
        if not self.connected or len(payload) > self.max_payload:
            return False
        if self.protocol.transport.get_write_buffer_size() > MAX_UNSENT:
            log.warning("the NATS server is not keeping up (%d bytes unsent); refusing to queue more",
                        self.protocol.transport.get_write_buffer_size())
            return False
        if reply:
            head = b"PUB %s %s %d\r\n" % (subject, reply, len(payload))
        else:
            head = b"PUB %s %d\r\n" % (subject, len(payload))
        self._out += (head, payload, CRLF)
        if not self._write_scheduled:
            self._write_scheduled = True
            self.loop.call_soon(self._write)
        return True

    def _write(self) -> None:
        self._write_scheduled = False
        out, self._out = self._out, []
        if self.connected and out:
            self.protocol.transport.writelines(out)

    async def flush(self, timeout: float = 2.0) -> bool:
        """Wait until the server has taken everything sent so far (a PING answered)."""
        self._write()
        if not self.connected:
            return False
        waiter = self.loop.create_future()
        self.protocol.pongs.append(waiter)
        self.protocol.transport.write(PING)
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except (asyncio.TimeoutError, NatsError):
            return False

    async def close(self) -> None:
        self.closed = True
        for task in (self._pinger, self._reconnector):
            if task is not None:
                task.cancel()
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.connected = False

    # ---- connection management ----

    async def _try_all(self, deadline: Optional[float] = None) -> bool:
        # Start from a random server so that many workers spread over a cluster.
        order = self.servers[:]
        random.shuffle(order)
        for server in order:
            if self.closed:
                return False
            limit = CONNECT_TIMEOUT if deadline is None else min(CONNECT_TIMEOUT, deadline - self.loop.time())
            try:
                await self._open(server, max(limit, 0.05))
                return True
            except (OSError, asyncio.TimeoutError, NatsError) as error:
                log.debug("NATS server %r: %r", server, error)
                if isinstance(error, NatsError) and "authorization" in str(error).lower():
                    self.refused = NatsError(f"NATS server {server!r} refused the credentials: {error}")
        return False

    async def _open(self, server: Server, timeout: float) -> None:
        protocol = _Protocol(self, server)

        async def connect_and_handshake() -> None:
            await self.loop.create_connection(lambda: protocol, server.host, server.port)
            await asyncio.shield(protocol.handshake)

        try:
            await asyncio.wait_for(connect_and_handshake(), timeout)
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.abort()
            raise
        self.protocol = protocol
        self.outstanding_pings = 0
        self.connected = True
        again = self._ever_connected
        self._ever_connected = True
        log.info("%s NATS server %r", "reconnected to" if again else "connected to", server)
        self.on_up(again)

    def _send_connect(self, protocol: _Protocol) -> None:
        protocol.connect_sent = True
        protocol.pongs.append(protocol.handshake)
        server = protocol.server
        options = {"verbose": False, "pedantic": False, "echo": False, "name": self.name, "lang": "python",
                   "version": "wsa-fast", "protocol": 1, "headers": False, "no_responders": False}
        if server.user is not None:
            options.update(user=server.user, **{"pass": server.password})
        if server.token is not None:
            options["auth_token"] = server.token
        commands = [b"CONNECT " + json.dumps(options).encode() + CRLF]
        commands += [b"SUB %s %s\r\n" % (subject, sid) for sid, subject in self.subjects.items()]
        commands.append(PING)
        protocol.transport.writelines(commands)

    def _learn(self, info: dict) -> None:
        """Take the server's limits, and the other cluster members it announces, from its INFO."""
        self.max_payload = int(info.get("max_payload", self.max_payload))
        known = {(s.host, s.port) for s in self.servers}
        template = self.servers[0]
        for address in info.get("connect_urls", ()):
            host, _, port = address.rpartition(":")
            host = host.strip("[]")
            if host and port.isdigit() and (host, int(port)) not in known:
                self.servers.append(Server(host, int(port), template.user, template.password, template.token))
                known.add((host, int(port)))

    def _lost(self, protocol: _Protocol) -> None:
        if protocol is not self.protocol:
            return
        self.protocol = None
        if self.connected:
            self.connected = False
            if not self.closed:
                log.warning("lost the NATS server; reconnecting")
                self.on_down()
        if not self.closed and (self._reconnector is None or self._reconnector.done()):
            self._reconnector = self.loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self.closed and not self.connected:
            if await self._try_all():
                return
            await asyncio.sleep(RECONNECT_WAIT)

    async def _ping_loop(self) -> None:
        while not self.closed:
            await asyncio.sleep(PING_INTERVAL)
            if not self.connected:
                continue
            if self.outstanding_pings >= MAX_OUTSTANDING_PINGS:
                log.warning("the NATS server stopped answering pings")
                self.protocol.transport.abort()
                continue
            self.outstanding_pings += 1
            self.protocol.pongs.append(None)
            self.protocol.transport.write(PING)
