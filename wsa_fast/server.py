"""Run one worker: a picows server on a uvloop loop, feeding the compiled gateway.

This module owns the upgrade (form negotiation, tokens at the handshake), startup and
the graceful stop; everything per message happens in ``wsa_fast._gateway``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import resource
import signal
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvloop
from picows import WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from . import client_log
from ._frame_gate import Sweeper, create_protocol
from ._gateway import CLOSE_TIMEOUT, Connection, Gateway, Metric
from .auth import make_authenticator
from .cluster import Cluster
from .config import ConfigError, Settings
from .grammar import is_client_id
from .message import FORMS, SUBPROTOCOLS, VERBOSE
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import MetricsBlock
from .picows_unmask import use_cached_unmask
from .tls import reload_certificate, server_context

__all__ = ["run", "serve", "listen_error"]

log = logging.getLogger("wsa_fast.server")
# What clients do wrong: INFO at most, rate-limited (wsa_fast.client_log).
client_events = logging.getLogger(client_log.CLIENT_LOGGER)

# The form each Sec-WebSocket-Protocol name asks for (profile section 1).
FORM_OF_SUBPROTOCOL = {name: form for form, name in SUBPROTOCOLS.items()}
# Plain-HTTP endpoints, on the public port or on --admin-port.
HEALTH_PATH, READY_PATH, METRICS_PATH = b"/healthz", b"/readyz", b"/metrics"
# An admin request is headers only.
ADMIN_REQUEST_SIZE = 65536
WS_VERSION = "13"
# How often a worker writes the gauges it does not keep current (pending requests) for scrapes.
GAUGE_REFRESH = 1.0
# A new connection starts with picows's smallest read buffer; it doubles for bigger messages.
READ_BUFFER_INIT = 2048
# Connections the kernel queues before accept (capped by net.core.somaxconn): asyncio's default of
# 100 overflows in a connect storm, and each overflowing client waits a SYN retry (1 s, then 3 s).
LISTEN_BACKLOG = 4096
# How long a new connection has to send its upgrade request.
HANDSHAKE_TIMEOUT = 10.0
# File descriptors kept out of max_connections: an eighth of the limit, at least 64, at most 1,000
# (sockets still in their handshake; a refused one lives a round trip).
FD_HEADROOM_MIN, FD_HEADROOM_MAX = 64, 1000
# File descriptors kept for all but client sockets (listening sockets, the event loop's own, logs, NATS):
# past the rest, a new connection closes the oldest one still in its handshake (docs/protocol.md "Limits").
FD_RESERVE = 32
# How often a draining worker checks whether in-flight work has finished.
DRAIN_POLL = 0.05
# How long a starting worker tries to reach NATS before giving up (its supervisor retries).
NATS_CONNECT_TIMEOUT = 10.0
EXIT_NO_NATS = 1


def run(
    settings: Settings,
    app: Any = None,
    *,
    worker: int | None = None,
    on_ready: Callable[[int], None] | None = None,
    metrics: MetricsBlock | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit status.

    ``worker`` is this process's number under a supervisor (``--workers N``), which
    ``on_ready(port)`` tells once the worker serves; ``metrics`` holds every worker's counters.
    """
    return uvloop.run(serve(settings, app, worker=worker, on_ready=on_ready, metrics=metrics))


async def serve(
    settings: Settings,
    app: Any = None,
    *,
    started: asyncio.Future | None = None,
    worker: int | None = None,
    on_ready: Callable[[int], None] | None = None,
    metrics: MetricsBlock | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    # picows logs every connect and disconnect at INFO: too chatty for a gateway's log.
    picows_log = logging.getLogger("picows.wsa_fast.picows")
    picows_log.setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    # Not a Logger, so picows does not make a child Logger per connection (0.6 KiB each).
    picows_lines = logging.LoggerAdapter(picows_log, {})
    client_log.install()
    use_cached_unmask()
    authenticator = getattr(app, "authenticator", None) or make_authenticator(settings)
    if metrics is None:
        metrics = MetricsBlock(1, app)
    gateway = Gateway(settings, app, authenticator, loop, metrics=metrics.worker((worker or 1) - 1))
    fd_limit = _descriptor_limit()
    acceptor = _acceptor(gateway, authenticator, _connection_budget(settings, fd_limit))
    if settings.admin_port is None:
        acceptor = _with_admin(acceptor, gateway, metrics)
    if app is not None:
        app.attach(gateway)
    cluster = None
    if settings.nats is not None:
        cluster = Cluster(gateway, settings)
        # Ctrl-C while this waits is a KeyboardInterrupt, which the CLI reports in one line.
        log.info("connecting to NATS (up to %gs)", NATS_CONNECT_TIMEOUT)
        try:
            await cluster.start(NATS_CONNECT_TIMEOUT)
        except Exception as error:
            log.error("cannot join the cluster: %s", error)
            return EXIT_NO_NATS
    tls = server_context(settings)
    sweeper = Sweeper(settings.ping_interval, settings.ping_timeout, loop, max(fd_limit - FD_RESERVE, 1))

    def make_protocol():
        # picows's protocol behind the FrameGate, which checks the frame rules, does the closing
        # handshake, frees idle connections' read buffers and pings them; the acceptor also gets
        # the gate, for the client's address.
        gate = create_protocol(
            lambda request: acceptor(request, gate),
            picows_lines,
            settings.max_message_size,
            READ_BUFFER_INIT,
            HANDSHAKE_TIMEOUT,
            CLOSE_TIMEOUT,
            settings.message_timeout,
            sweeper,
        )
        return gate

    try:
        server = await loop.create_server(
            make_protocol,
            settings.host,
            settings.port,
            # Every worker of a --workers N gateway binds the same port; the kernel spreads connections.
            reuse_port=settings.workers > 1,
            ssl=tls,
            backlog=LISTEN_BACKLOG,
        )
    except OSError as error:
        raise listen_error(settings.host, settings.port, error) from None
    admin = None
    if settings.admin_port is not None:
        # Plain HTTP on a private address; it outlives the public port during a drain, for /readyz.
        admin_acceptor = _with_admin(lambda request, gate=None: _refuse(404, b"not found\n"), gateway, metrics)
        try:
            admin = await loop.create_server(
                lambda: create_protocol(
                    admin_acceptor, picows_lines, ADMIN_REQUEST_SIZE, READ_BUFFER_INIT, HANDSHAKE_TIMEOUT, CLOSE_TIMEOUT
                ),
                settings.admin_host,
                settings.admin_port,
                reuse_port=settings.workers > 1,
            )
        except OSError as error:
            raise listen_error(settings.admin_host, settings.admin_port, error) from None
    # Signals are handled before the port is announced, so whoever waits for it may stop us at once.
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if tls is not None:
        loop.add_signal_handler(signal.SIGHUP, reload_certificate, tls, settings)
    port = server.sockets[0].getsockname()[1]
    if worker is None:
        if admin is not None:
            log.info("admin endpoints on http://%s:%d", settings.admin_host, admin.sockets[0].getsockname()[1])
        log.info(
            "listening on %s://%s:%d (auth: %s)", settings.scheme, settings.host, port, type(authenticator).__name__
        )
    else:
        log.info("worker %d serving %s://%s:%d", worker, settings.scheme, settings.host, port)
    gauges = loop.create_task(_refresh_gauges(gateway))
    if started is not None:
        started.set_result(port)
    if on_ready is not None:
        on_ready(port)
    await stop.wait()
    log.info("stopping: draining for up to %gs", settings.drain_timeout)
    server.close()
    gateway.start_draining()
    deadline = loop.time() + settings.drain_timeout
    while gateway.busy() and loop.time() < deadline:
        await asyncio.sleep(DRAIN_POLL)
    gateway.close_all()
    # Clients answer the 1001 CLOSE (a clean close for them) before the process goes.
    deadline = loop.time() + CLOSE_TIMEOUT
    while gateway.connection_count() and loop.time() < deadline:
        await asyncio.sleep(DRAIN_POLL)
    gauges.cancel()
    sweeper.close()
    if cluster is not None:
        await cluster.close()
    if admin is not None:
        admin.close()
    log.info("stopped")
    return 0


async def _refresh_gauges(gateway: Gateway) -> None:
    while True:
        gateway.refresh_gauges()
        await asyncio.sleep(GAUGE_REFRESH)


def listen_error(host: str, port: int, error: OSError) -> ConfigError:
    """A start-up error (one line, exit 2) for an address the gateway cannot listen on."""
    if isinstance(error, socket.gaierror):
        return ConfigError(f"cannot listen on {host!r}: the host name does not resolve ({error.strerror})", "host")
    reason = os.strerror(error.errno) if error.errno else str(error)
    return ConfigError(f"cannot listen on {host}:{port}: {reason.lower()}", "port")


def _with_admin(
    accept: Callable[..., WSUpgradeResponseWithListener], gateway: Gateway, metrics: MetricsBlock
) -> Callable[..., WSUpgradeResponseWithListener]:
    """``accept``, answering /healthz, /readyz and /metrics first (plain HTTP, no upgrade)."""

    def answer(request: WSUpgradeRequest, gate: Any = None) -> WSUpgradeResponseWithListener:
        path = request.path.partition(b"?")[0]
        if path == HEALTH_PATH:
            return _answer(WSUpgradeResponse.create_ok_response(b"ok\n"))
        if path == READY_PATH:
            # Serving (it answers), not draining, and with NATS, connected to it.
            if gateway.draining:
                return _refuse(503, b"draining\n")
            if gateway.settings.nats is not None and not gateway.cluster_up:
                return _refuse(503, b"not connected to NATS\n")
            return _answer(WSUpgradeResponse.create_ok_response(b"ready\n"))
        if path == METRICS_PATH:
            gateway.refresh_gauges()
            return _answer(
                WSUpgradeResponse.create_ok_response(metrics.render(), {"Content-Type": METRICS_CONTENT_TYPE})
            )
        return accept(request, gate)

    return answer


def _answer(response: WSUpgradeResponse) -> WSUpgradeResponseWithListener:
    return WSUpgradeResponseWithListener(response, None)


def _descriptor_limit() -> int:
    """The file descriptors this process may open, raised to the hard limit where allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _connection_budget(settings: Settings, soft: int) -> int:
    """max_connections, lowered to leave file descriptors for sockets still in their handshake and the rest.

    Out of descriptors, accept() fails and nobody even hears a 503: refuse early instead.
    """
    budget = max(soft - max(FD_HEADROOM_MIN, min(soft // 8, FD_HEADROOM_MAX)), 1)
    if not settings.max_connections:
        return budget
    if settings.max_connections <= budget:
        return settings.max_connections
    log.warning("max_connections is %d per worker: this process may open only %d files (ulimit -n)", budget, soft)
    return budget


def _acceptor(gateway: Gateway, authenticator: Any, max_connections: int):
    """The picows listener factory: pick the form, enforce the connection limits, check a handshake
    token, make a Connection. ``gate`` is the connection's FrameGate (for the client's address)."""
    per_ip = gateway.settings.max_connections_per_ip

    def accept(request: WSUpgradeRequest, gate: Any) -> WSUpgradeResponseWithListener:
        try:
            url = urlsplit(request.path.decode("latin-1"))
        except ValueError:
            return _refuse(400, b"invalid request target\n")
        origin = request.headers.get("Origin")
        if origin is not None and not gateway.settings.origin_allowed(origin):
            # A page from another site must not use its visitors' credentials here (cross-site WebSocket hijacking).
            client_events.info("refused an upgrade from origin %r", origin)
            gateway.count(Metric.REFUSED_ORIGIN)
            return _refuse(403, b"origin not allowed\n")
        if request.headers.get("Sec-WebSocket-Version", WS_VERSION) != WS_VERSION:
            # RFC 6455 section 4.2.2: name the version this server speaks.
            return _refuse(426, b"only WebSocket version 13 is supported\n", {"Sec-WebSocket-Version": WS_VERSION})
        address = gate.address
        ip = address[0] if isinstance(address, tuple) else None
        total, from_ip = gateway.connection_counts(ip)
        if total >= max_connections:
            client_log.refused("refusing a connection from %s: max_connections (%d) reached", ip, max_connections)
            gateway.count(Metric.REFUSED_MAX_CONNECTIONS)
            return _refuse(503, b"too many connections\n")
        if per_ip and from_ip >= per_ip:
            client_log.refused("refusing a connection from %s: max_connections_per_ip (%d) reached", ip, per_ip)
            gateway.count(Metric.REFUSED_MAX_CONNECTIONS_PER_IP)
            return _refuse(429, b"too many connections from your address\n")
        query = parse_qs(url.query)

        form, protocol = VERBOSE, None
        offered = [p.strip() for h in request.headers.getall("Sec-WebSocket-Protocol", []) for p in h.split(",")]
        for name in offered:
            if name in FORM_OF_SUBPROTOCOL:
                form, protocol = FORM_OF_SUBPROTOCOL[name], name
                break
        else:
            requested = query.get("format", [None])[0]
            if requested is not None:
                if requested not in FORMS:
                    return _refuse(400, b"format must be verbose or compact\n")
                form = FORMS[requested]

        client_id = None
        token = _handshake_token(request, query)
        if token is not None:
            client_id = authenticator.token(token)
            if inspect.isawaitable(client_id):
                if inspect.iscoroutine(client_id):
                    client_id.close()  # never awaited: no "coroutine was never awaited" warning
                log.error("the authenticator's token() must be synchronous for handshake tokens")
                return _refuse(500, b"handshake tokens are not supported by this authenticator\n")
            if not isinstance(client_id, str) or not is_client_id(client_id):
                gateway.count(Metric.LOGINS_FAIL)
                return _refuse(401, b"invalid token\n")
            if gateway.settings.duplicate_login == "reject" and gateway.is_connected(client_id):
                gateway.count(Metric.LOGINS_FAIL)
                return _refuse(409, b"client id already connected\n")

        headers = {"Sec-WebSocket-Protocol": protocol} if protocol else None
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response(headers),
            Connection(
                gateway, form, str(client_id) if client_id is not None else None, getattr(client_id, "roles", ()), ip
            ),
        )

    return accept


def _handshake_token(request: WSUpgradeRequest, query: dict[str, list[str]]) -> str | None:
    authorization = request.headers.get("Authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    values = query.get("token")
    return values[0] if values else None


def _refuse(status: int, body: bytes, headers: dict[str, str] | None = None) -> WSUpgradeResponseWithListener:
    return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(status, body, headers), None)
