"""A minimal NATS core client on the running loop, made for the gateway's batched traffic.

Only what the cluster needs: PUB (with a reply subject naming the sender), SUB with a
synchronous callback per message (no queue, no task per message), PING/PONG liveness,
and reconnection over the configured and discovered servers, re-subscribing each time.
Publishes are written together once per loop iteration (one system call for all of
them). TLS (``tls://`` URLs, or a server whose INFO requires it) verifies the server's
certificate against the system's CAs or a CA file; NKEY and credentials-file (JWT + NKEY
seed) authentication sign the server's nonce. A publish while disconnected, or while the server is not
reading fast enough, returns False at once instead of buffering: the gateway answers such requests itself,
so nothing arrives twice or late after a NATS restart, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
import ssl
from collections import deque
from collections.abc import Callable
from typing import cast
from urllib.parse import unquote, urlsplit

from ._gateway import ClusterRouter, NatsReader

__all__ = ["NatsClient", "NatsError", "Credentials", "parse_servers", "load_credentials", "tls_context"]

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

# What a subscription's messages go to: (payload, reply subject), or a ClusterRouter, which reads
# its batches in place in the read buffer.
Callback = Callable[[bytes, bytes | None], None] | ClusterRouter


class NatsError(Exception):
    pass


class NatsRefused(NatsError):
    """TLS cannot be set up with this server (no TLS, or a certificate that does not verify): retrying will not help."""


class Server:
    __slots__ = ("host", "port", "user", "password", "token", "tls")

    def __init__(
        self,
        host: str,
        port: int,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        tls: bool = False,
    ) -> None:
        self.host, self.port, self.user, self.password, self.token = host, port, user, password, token
        self.tls = tls  # tls:// asked for TLS whatever the server announces

    def __repr__(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"


def _port_of(parts) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def parse_servers(urls: str) -> list[Server]:
    """``nats|tls://[user:pass@|token@]host[:port][,…]`` or ``host:port`` -> servers; ValueError names a bad one."""
    servers = []
    for url in (u.strip() for u in urls.split(",")):
        if not url:
            continue
        parts = urlsplit(url if "://" in url else "nats://" + url)
        # A bare word is more likely a typo than a NATS host on the default port: ask for host:port.
        if "://" not in url and _port_of(parts) is None:
            raise ValueError(f"{url!r}: give nats://HOST[:PORT], tls://HOST[:PORT] or HOST:PORT")
        if parts.scheme not in ("nats", "tls"):
            raise ValueError(f"{url!r}: only nats:// and tls:// URLs are supported")
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
        servers.append(Server(parts.hostname, port, user, password, token, parts.scheme == "tls"))
    if not servers:
        raise ValueError("no NATS server given")
    return servers


# A credentials file (``nsc``'s .creds): the user JWT and the user's NKEY seed, each between dashed lines.
_CREDS_BLOCK = re.compile(rb"-{3,}[^\n]*BEGIN[^\n]*-{3,}\s*\n\s*(\S+)\s*\n\s*-{3,}[^\n]*END[^\n]*-{3,}")


class Credentials:
    """An NKEY seed, and the user JWT a credentials file pairs with it; signs the server's nonce."""

    __slots__ = ("_key", "jwt", "public_key")

    def __init__(self, seed: bytes, jwt: str | None = None) -> None:
        import nkeys

        try:
            self._key = nkeys.from_seed(bytearray(seed))
            self.public_key = self._key.public_key.decode()
        except Exception as error:  # nkeys raises its own errors and binascii/nacl ones
            raise ValueError(f"not a valid NKEY seed ({type(error).__name__})") from None
        self.jwt = jwt

    def __repr__(self) -> str:
        return f"Credentials({self.public_key})"  # never the seed

    def connect_options(self, nonce: str) -> dict:
        signature = base64.urlsafe_b64encode(self._key.sign(nonce.encode())).rstrip(b"=").decode()
        if self.jwt is not None:
            return {"jwt": self.jwt, "sig": signature}
        return {"nkey": self.public_key, "sig": signature}


def load_credentials(creds_file: str | None = None, nkey_seed_file: str | None = None) -> Credentials | None:
    """Read a credentials file (JWT + seed) or an NKEY seed file; ValueError says what is wrong, never the key."""
    if creds_file is not None and nkey_seed_file is not None:
        raise ValueError("give a credentials file or an NKEY seed file, not both")
    path = creds_file or nkey_seed_file
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            text = file.read()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    if creds_file is not None:
        blocks = _CREDS_BLOCK.findall(text)
        if len(blocks) != 2:
            raise ValueError(f"{path}: expected a user JWT and an NKEY seed block (a .creds file)")
        jwt, seed = blocks
        try:
            return Credentials(seed, jwt.decode("ascii"))
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: {error}") from None
    seeds = [line for line in text.split() if line.startswith(b"SU")]
    if len(seeds) != 1:
        raise ValueError(f"{path}: expected one user NKEY seed (a line starting with SU)")
    try:
        return Credentials(seeds[0])
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verifies the server's certificate and host name, against ``ca_file`` or the system's CAs."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"cannot load the CA file {ca_file}: {error}") from None


def _cancel_requested() -> bool:
    """Whether the running task was asked to cancel (Python 3.11+ counts it; 3.10 has no Runner to ask)."""
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return cancelling is not None and cancelling() > 0


def _time_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())
        waiter.exception()  # whoever awaits it still gets it; a caller cancelled meanwhile is no error


class _Protocol(NatsReader, asyncio.BufferedProtocol):
    """One TCP connection to a NATS server: NatsReader reads it (MSG in C), the other lines are handled here."""

    def __init__(self, client: NatsClient, server: Server) -> None:
        super().__init__(client.handlers)
        self.client = client
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.connect_sent = False
        self.nonce: str | None = None  # from INFO: what NKEY authentication signs
        self.upgrading: asyncio.Task | None = None  # the TLS handshake, held so it is not collected
        # Answered by the PONG to the PING sent after CONNECT: the server took us.
        self.handshake: asyncio.Future = client.loop.create_future()
        # One entry per PING in flight, in order: a future to resolve, or None for a keepalive.
        self.pongs: deque[asyncio.Future | None] = deque()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # create_connection's: a stream transport

    async def _upgrade(self, offered: bool) -> None:
        """Turn the connection into TLS after the server's INFO, then log in over it."""
        assert self.transport is not None  # the server's INFO came over it
        try:
            if not offered:
                raise NatsRefused("tls:// asks for TLS, but the server does not offer it")
            self.transport = await self.client.loop.start_tls(
                self.transport, self, self.client.tls, server_hostname=self.server.host
            )
        except Exception as error:  # whatever went wrong, this connection attempt has failed
            if isinstance(error, ssl.SSLCertVerificationError):
                error = NatsRefused(f"its TLS certificate is not trusted ({error.verify_message})")
            elif not isinstance(error, NatsError):
                error = NatsError(f"TLS handshake failed: {error!r}")
            if not self.handshake.done():
                self.handshake.set_exception(error)
                self.handshake.exception()  # whoever awaits it still gets it
            if self.transport is not None:
                self.transport.abort()
            return
        self.client._send_connect(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        for waiter in (self.handshake, *self.pongs):
            if waiter is not None and not waiter.done():
                waiter.set_exception(NatsError(f"connection closed: {exc}"))
                waiter.exception()  # whoever awaits it still gets it; nobody awaiting is no error
        self.client._lost(self)

    def control_line(self, line: bytes) -> bool:
        client = self.client
        if line == b"PING":
            assert self.transport is not None  # it came over it
            self.transport.write(PONG)
        elif line == b"PONG":
            client.outstanding_pings = 0
            waiter = self.pongs.popleft() if self.pongs else None
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif line.startswith(b"INFO "):
            info = json.loads(line[5:])
            client._learn(info)
            if not self.connect_sent:
                self.connect_sent = True
                self.nonce = info.get("nonce")
                if self.server.tls or info.get("tls_required"):
                    # The server waits for our TLS handshake: nothing more comes in plain text.
                    offered = bool(info.get("tls_required") or info.get("tls_available"))
                    self.upgrading = client.loop.create_task(self._upgrade(offered))
                    return False
                client._send_connect(self)
        elif line.startswith(b"-ERR"):
            log.error("NATS server error: %s", line[5:].decode("utf-8", "replace"))
            if not self.handshake.done():
                self.handshake.set_exception(NatsError(line[5:].decode("utf-8", "replace")))
        return True


class NatsClient:
    """``await connect()``, then ``subscribe``/``publish``; ``on_up``/``on_down`` follow the link."""

    def __init__(
        self,
        servers: list[Server],
        name: str,
        *,
        on_up: Callable[[bool], None] = lambda again: None,
        on_down: Callable[[], None] = lambda: None,
        tls: ssl.SSLContext | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._tls = tls
        self.credentials = credentials
        self.servers = list(servers)
        self.name = name
        self.on_up = on_up
        self.on_down = on_down
        self.handlers: list[Callback | None] = [None]  # by sid (from 1), shared with each connection's reader
        self.subjects: dict[bytes, bytes] = {}  # sid -> subject, resent on every connection
        # While connected, the connection in use (its transport set: the handshake went over it).
        self.protocol: _Protocol | None = None
        self.connected = False
        self.closed = False
        self.max_payload = 1048576
        self.outstanding_pings = 0
        self._out: list[bytes] = []  # this loop iteration's publishes
        self._write_scheduled = False
        self._ever_connected = False
        self._reconnector: asyncio.Task | None = None
        self.refused: NatsError | None = None  # a server turned our credentials down
        self._pinger: asyncio.Task | None = None

    @property
    def tls(self) -> ssl.SSLContext:
        """The context TLS connections use: the one given, else the system's CAs (made on first use)."""
        if self._tls is None:
            self._tls = tls_context()
        return self._tls

    async def connect(self, timeout: float) -> None:
        """Connect to the first reachable server; NatsError if none answers within ``timeout``."""
        deadline = self.loop.time() + timeout
        while True:
            if await self._try_all(deadline):
                break
            if self.refused is not None:
                raise self.refused  # wrong credentials do not get better by waiting
            if self.loop.time() >= deadline:
                raise NatsError(f"no NATS server reachable at {', '.join(map(repr, self.servers))}")
            await asyncio.sleep(RECONNECT_WAIT)
        self._pinger = self.loop.create_task(self._ping_loop())

    def subscribe(self, subject: bytes, callback: Callback) -> None:
        sid = str(len(self.handlers)).encode()
        self.handlers.append(callback)
        self.subjects[sid] = subject
        if self.connected:
            self._transport().write(b"SUB %s %s\r\n" % (self.subjects[sid], sid))

    def publish(self, subject: bytes, payload: bytes, reply: bytes = b"") -> bool:
        """Queue one message for this loop iteration's write; False (nothing sent) if it cannot go."""
        if len(payload) > self.max_payload or not self._can_send():
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

    def write_commands(self, commands: bytes) -> bool:
        """Write PUB commands built by the caller (the cluster router's batches), after what publish() queued;
        False (nothing sent) if they cannot go."""
        if not self._can_send():
            return False
        self._write()
        self._transport().write(commands)
        return True

    def _can_send(self) -> bool:
        if not self.connected:
            return False
        unsent = self._transport().get_write_buffer_size()
        if unsent > MAX_UNSENT:
            log.warning("the NATS server is not keeping up (%d bytes unsent); refusing to queue more", unsent)
            return False
        return True

    def _write(self) -> None:
        self._write_scheduled = False
        out, self._out = self._out, []
        if self.connected and out:
            self._transport().writelines(out)

    def _transport(self) -> asyncio.Transport:
        """The transport of the connection in use: called only while connected."""
        protocol = self.protocol
        assert protocol is not None and protocol.transport is not None, "not connected"
        return protocol.transport

    async def flush(self, timeout: float = 2.0) -> bool:
        """Wait until the server has taken everything sent so far (a PING answered)."""
        self._write()
        if not self.connected:
            return False
        waiter = self.loop.create_future()
        protocol = self.protocol
        assert protocol is not None and protocol.transport is not None  # connected
        protocol.pongs.append(waiter)
        protocol.transport.write(PING)
        # A timer, not wait_for: no task per call. A PONG after the timeout finds its waiter done and is ignored.
        timer = self.loop.call_later(timeout, _time_out, waiter)
        try:
            await waiter
            return True
        except (asyncio.TimeoutError, NatsError):
            return False
        finally:
            timer.cancel()

    async def close(self) -> None:
        self.closed = True
        for task in (self._pinger, self._reconnector):
            if task is not None:
                task.cancel()
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.connected = False

    # ---- connection management ----

    async def _try_all(self, deadline: float | None = None) -> bool:
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
                elif isinstance(error, NatsRefused):
                    self.refused = NatsError(f"NATS server {server!r}: {error}")
        return False

    async def _open(self, server: Server, timeout: float) -> None:
        protocol = _Protocol(self, server)

        async def connect_and_handshake() -> None:
            await self.loop.create_connection(lambda: protocol, server.host, server.port)
            await asyncio.shield(protocol.handshake)

        try:
            await asyncio.wait_for(connect_and_handshake(), timeout)
            # Closed after the server's PONG, before this resumed (wait_for takes a few loop iterations more
            # than the handshake): not a connection to use, and _lost did not count it as the one in use.
            if protocol.lost:
                raise NatsError("connection closed during the handshake")
        except BaseException as error:
            if protocol.transport is not None:
                protocol.transport.abort()
            if not isinstance(error, asyncio.CancelledError) and _cancel_requested():
                # wait_for (Python <= 3.11) answers a cancellation that came as the attempt failed with the
                # failure: Ctrl-C (asyncio.Runner cancels the main task) would be retried away.
                raise asyncio.CancelledError from error
            raise
        self.protocol = protocol
        self.outstanding_pings = 0
        self.connected = True
        again = self._ever_connected
        self._ever_connected = True
        log.info("%s NATS server %r", "reconnected to" if again else "connected to", server)
        self.on_up(again)

    def _send_connect(self, protocol: _Protocol) -> None:
        protocol.pongs.append(protocol.handshake)
        server = protocol.server
        options = {
            "verbose": False,
            "pedantic": False,
            "echo": False,
            "name": self.name,
            "lang": "python",
            "version": "wsa-fast",
            "protocol": 1,
            "headers": False,
            "no_responders": False,
        }
        if server.user is not None:
            options.update(user=server.user, **{"pass": server.password})
        if server.token is not None:
            options["auth_token"] = server.token
        if self.credentials is not None and protocol.nonce is not None:
            options.update(self.credentials.connect_options(protocol.nonce))
        commands = [b"CONNECT " + json.dumps(options).encode() + CRLF]
        commands += [b"SUB %s %s\r\n" % (subject, sid) for sid, subject in self.subjects.items()]
        commands.append(PING)
        assert protocol.transport is not None  # the server's INFO came over it
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
                self.servers.append(
                    Server(host, int(port), template.user, template.password, template.token, template.tls)
                )
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
            protocol = self.protocol
            assert protocol is not None and protocol.transport is not None  # connected
            if self.outstanding_pings >= MAX_OUTSTANDING_PINGS:
                log.warning("the NATS server stopped answering pings")
                protocol.transport.abort()
                continue
            self.outstanding_pings += 1
            protocol.pongs.append(None)
            protocol.transport.write(PING)
