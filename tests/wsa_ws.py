"""Helpers for the end-to-end tests: a real ``wsa-fast serve`` subprocess, spoken to with the
independent ``websockets`` client, and the WSA message shapes written out by hand.

Nothing here imports the gateway: messages are built as JSON text and replies are parsed
with ``json``, so the tests check the wire as any other client would see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import itertools
import json
import random
import re
import ssl
from collections.abc import Iterator
from typing import Any

import uvloop
from gateway_process import ROOT, GatewayProcess
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

# How long a reply may take before a test fails, and how long "nothing arrives" is watched.
REPLY_TIMEOUT = 3.0
SILENCE = 0.3

FORMS = ("verbose", "compact")
NEGOTIATIONS = ("subprotocol", "query")
SUBPROTOCOL = {"verbose": "wsa.v1", "compact": "wsa.v1.compact"}

ISO_ID = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")
SHORT_ID = re.compile(r"^[a-z0-9]{5}$")


# ---------------------------------------------------------------- the server process


@contextlib.contextmanager
def running_server(*args: str, env: dict | None = None, allow_tracebacks: bool = False) -> Iterator[GatewayProcess]:
    """A started ``wsa-fast serve --port 0 ARGS`` for a ``with`` block (use it inside a module-scoped fixture).

    On the way out it is stopped, and a traceback in its log fails the test unless allowed.
    """
    with GatewayProcess(*args, env=env, allow_tracebacks=allow_tracebacks) as server:
        yield server


def http_get(
    server: GatewayProcess, path: str, headers: dict | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    """A plain HTTP GET to the gateway, over TLS when ``context`` (the client side) is given."""
    if context is not None:
        conn = http.client.HTTPSConnection(server.host, server.port, timeout=REPLY_TIMEOUT, context=context)
    else:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=REPLY_TIMEOUT)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# ---------------------------------------------------------------- running async tests


def aio(fn):
    """Run an ``async def`` test on a fresh event loop: asyncio's, or uvloop's when the test gets ``loop="uvloop"``.

    No pytest plugin needed; pytest-timeout bounds it like every test.
    """

    @functools.wraps(fn)
    def run(*args, **kwargs):
        runner = uvloop.run if kwargs.get("loop") == "uvloop" else asyncio.run
        return runner(fn(*args, **kwargs))

    return run


# ---------------------------------------------------------------- ids

_counter = itertools.count(random.randrange(36**4, 36**5 - 10**6))
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_RUN = "".join(random.choice(_BASE36) for _ in range(4))


def new_id() -> str:
    """A fresh ``[a-z0-9]{5}`` message id."""
    n = next(_counter)
    out = []
    for _ in range(5):
        n, d = divmod(n, 36)
        out.append(_BASE36[d])
    return "".join(reversed(out))


_uids = itertools.count(1)


def uid(prefix: str = "c") -> str:
    """A client id unique across this test run."""
    return f"{prefix}-{_RUN}{next(_uids)}"


# ---------------------------------------------------------------- encoding by hand


class Raw(str):
    """JSON text put into a message exactly as written (to check bytes are passed through)."""


class _Absent:
    """A key left out of the message (its repr names the test cases: pytest-xdist workers must agree)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()

_COMPACT_KEYS = {"from": "f", "to": "t", "type": "y", "id": "i", "payload": "p"}
_COMPACT_TYPES = {"request": "q", "response": "r", "event": "e"}
_COMPACT_PEERS = {"server": "s", "client": "c"}
_COMPACT_RESULTS = {"success": "s", "fail": "f"}
_VERBOSE_KEYS = {v: k for k, v in _COMPACT_KEYS.items()}
_VERBOSE_TYPES = {v: k for k, v in _COMPACT_TYPES.items()}
_VERBOSE_PEERS = {v: k for k, v in _COMPACT_PEERS.items()}
_VERBOSE_RESULTS = {v: k for k, v in _COMPACT_RESULTS.items()}


def dumps(value: Any) -> str:
    """Compact JSON, keeping dict order, with Raw values inserted verbatim."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def payload_dict(
    form: str,
    *,
    method: Any = ABSENT,
    params: Any = ABSENT,
    result: Any = ABSENT,
    receipt: Any = ABSENT,
    code: Any = ABSENT,
    data: Any = ABSENT,
) -> dict:
    compact = form == "compact"
    p: dict = {}
    if method is not ABSENT:
        p["m" if compact else "method"] = method
    if params is not ABSENT:
        p["p" if compact else "params"] = params
    if result is not ABSENT:
        p["r" if compact else "result"] = _COMPACT_RESULTS.get(result, result) if compact else result
    if receipt is not ABSENT:
        p["c" if compact else "receipt"] = receipt
    if code is not ABSENT:
        p["c" if compact else "code"] = code
    if data is not ABSENT:
        p["d" if compact else "data"] = data
    return p


def envelope(form: str, frm: Any, to: Any, type: Any, id: Any, payload: Any) -> dict:
    """The message as an ordered dict in ``form`` (peer and type words translated)."""
    if form == "compact":
        return {
            "f": _COMPACT_PEERS.get(frm, frm),
            "t": _COMPACT_PEERS.get(to, to),
            "y": _COMPACT_TYPES.get(type, type),
            "i": id,
            "p": payload,
        }
    return {"from": frm, "to": to, "type": type, "id": id, "payload": payload}


def encode(form: str, frm: Any, to: Any, type: Any, id: Any, **payload: Any) -> str:
    """One message as JSON text in ``form``, keys in the order the server writes them."""
    return dumps(envelope(form, frm, to, type, id, payload_dict(form, **payload)))


def request(form: str, frm: str, to: str, id: str, method: str, params: Any = ABSENT) -> str:
    return encode(form, frm, to, "request", id, method=method, params=params)


def event(form: str, frm: str, to: str, id: str, method: str, params: Any = ABSENT) -> str:
    return encode(form, frm, to, "event", id, method=method, params=params)


def response(form: str, frm: str, to: str, id: str, result: str = "success", **payload: Any) -> str:
    return encode(form, frm, to, "response", id, result=result, **payload)


def form_of(obj: dict) -> str:
    keys = set(obj)
    if keys == set(_COMPACT_KEYS.values()):
        return "compact"
    if keys == set(_COMPACT_KEYS):
        return "verbose"
    raise AssertionError(f"not a WSA envelope of either form: {obj!r}")


def normalize(obj: dict) -> dict:
    """A received message in verbose terms (after checking it is wholly in one form)."""
    form = form_of(obj)
    if form == "verbose":
        assert isinstance(obj["payload"], dict), obj
        allowed = {
            "request": {"method", "params"},
            "event": {"method", "params"},
            "response": {"result", "receipt", "code", "data"},
        }[obj["type"]]
        assert set(obj["payload"]) <= allowed, obj
        return obj
    p = obj["p"]
    assert isinstance(p, dict), obj
    out = {
        "from": _VERBOSE_PEERS.get(obj["f"], obj["f"]),
        "to": _VERBOSE_PEERS.get(obj["t"], obj["t"]),
        "type": _VERBOSE_TYPES[obj["y"]],
        "id": obj["i"],
    }
    payload: dict = {}
    if out["type"] == "response":
        assert set(p) <= {"r", "c", "d"}, obj
        payload["result"] = _VERBOSE_RESULTS[p["r"]]
        if "c" in p:
            payload["receipt" if payload["result"] == "success" else "code"] = p["c"]
    else:
        assert set(p) <= {"m", "p"}, obj
        payload["method"] = p["m"]
        if "p" in p:
            payload["params"] = p["p"]
    if "d" in p:
        payload["data"] = p["d"]
    out["payload"] = payload
    return out


# ---------------------------------------------------------------- a raw client


class Peer:
    """One ``websockets`` connection that speaks WSA in ``form`` (the form it negotiated)."""

    def __init__(self, ws: ClientConnection, form: str, cid: str = "") -> None:
        self.ws = ws
        self.form = form
        self.cid = cid  # the bound id, "" while anonymous

    # -- sending

    async def send_raw(self, data: Any) -> None:
        await self.ws.send(data)

    async def request(
        self,
        to: str,
        method: str,
        params: Any = ABSENT,
        *,
        id: str | None = None,
        frm: str | None = None,
        form: str | None = None,
    ) -> str:
        id = id or new_id()
        await self.ws.send(request(form or self.form, self.cid if frm is None else frm, to, id, method, params))
        return id

    async def event(
        self,
        to: str,
        method: str,
        params: Any = ABSENT,
        *,
        id: str | None = None,
        frm: str | None = None,
        form: str | None = None,
    ) -> str:
        id = id or new_id()
        await self.ws.send(event(form or self.form, self.cid if frm is None else frm, to, id, method, params))
        return id

    async def respond(
        self,
        to: str,
        id: str,
        result: str = "success",
        *,
        frm: str | None = None,
        form: str | None = None,
        **payload: Any,
    ) -> None:
        await self.ws.send(response(form or self.form, self.cid if frm is None else frm, to, id, result, **payload))

    # -- receiving

    async def recv_raw(self, timeout: float = REPLY_TIMEOUT) -> Any:
        try:
            return await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.cid or 'anonymous'}: no message within {timeout}s") from None

    async def recv(self, timeout: float = REPLY_TIMEOUT) -> dict:
        """The next message, checked to be in this connection's form, in verbose terms."""
        raw = await self.recv_raw(timeout)
        assert isinstance(raw, str), f"expected a text frame, got {raw!r}"
        obj = json.loads(raw)
        assert form_of(obj) == self.form, f"{self.cid}: expected {self.form} form, got {raw}"
        return normalize(obj)

    async def silent(self, seconds: float = SILENCE) -> None:
        await assert_silent(self.ws, seconds)

    # -- common exchanges

    async def call(self, to: str, method: str, params: Any = ABSENT, **kw: Any) -> dict:
        id = await self.request(to, method, params, **kw)
        reply = await self.recv()
        assert reply["id"] == id, reply
        return reply

    async def ping(self) -> dict:
        reply = await self.call("server", "wsa@v1/ping")
        assert reply["from"] == "server" and reply["type"] == "response", reply
        assert reply["to"] == self.cid, reply
        assert reply["payload"] == {"result": "success"}, reply
        return reply

    async def login(self, cid: str, params: Any = ABSENT) -> dict:
        reply = await self.call("server", "auth@v1/login", params, frm=cid)
        if reply["payload"].get("result") == "success":
            self.cid = reply["payload"]["receipt"]
        return reply

    async def close(self) -> None:
        await self.ws.close()


async def settled(*peers: Peer) -> None:
    """Nothing more is on its way to any of ``peers`` from what they sent so far (one worker; the barrier).

    A gateway answers each connection's messages in order and writes what one message causes before it
    reads the next. First round: each peer's ping reply proves all it sent before was processed (so what
    that caused for anyone is already queued). Second round: each peer's ping reply comes next, so
    nothing else was queued for it. What comes later by design (a TIMEOUT, an async handler's answer,
    a record from another worker) needs ``silent`` after this.
    """
    for _ in range(2):
        for peer in peers:
            await peer.ping()


async def assert_silent(ws: ClientConnection, seconds: float = SILENCE) -> None:
    """Nothing arrives on ``ws`` for ``seconds`` (and the connection stays open)."""
    try:
        message = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"expected nothing, got {message!r}")


async def close_code(ws: ClientConnection, timeout: float = REPLY_TIMEOUT) -> tuple[int | None, list]:
    """Read until the server closes; returns (its close code, the messages that came first)."""
    messages = []
    try:
        while True:
            messages.append(await asyncio.wait_for(ws.recv(), timeout))
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd is not None else None), messages
    except asyncio.TimeoutError:
        raise AssertionError(f"the server did not close the connection within {timeout}s; got {messages}") from None


async def open_ws(
    server: GatewayProcess,
    form: str = "verbose",
    how: str | None = "subprotocol",
    *,
    path: str = "/",
    query: dict | None = None,
    headers: dict | None = None,
    subprotocols: list | None = None,
    **kw: Any,
) -> ClientConnection:
    query = dict(query or {})
    if subprotocols is None and how == "subprotocol":
        subprotocols = [SUBPROTOCOL[form]]
    if how == "query":
        query.setdefault("format", form)
    url = server.url_for(path, **query)
    # A server reached over wss:// may say how to verify it (a test CA).
    if getattr(server, "ssl_context", None) is not None:
        kw.setdefault("ssl", server.ssl_context)
    return await connect(
        url,
        subprotocols=subprotocols,
        additional_headers=headers,
        compression=None,
        open_timeout=REPLY_TIMEOUT,
        close_timeout=1,
        **kw,
    )


class Clients:
    """Opens peers on one server and closes them all at the end of an ``async with`` block."""

    def __init__(self, server: GatewayProcess) -> None:
        self.server = server
        self.peers: list[Peer] = []

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for peer in self.peers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.ws.close(), 2)

    async def open(
        self, form: str = "verbose", how: str | None = "subprotocol", *, login: str | None = None, **kw: Any
    ) -> Peer:
        """A connection in ``form``; ``login``: an id to log in as (dev auth) before returning."""
        ws = await open_ws(self.server, form, how, **kw)
        peer = Peer(ws, form)
        self.peers.append(peer)
        if login is not None:
            reply = await peer.login(login)
            assert reply["payload"] == {"result": "success", "receipt": login}, reply
        return peer

    async def bound(self, *forms: str, prefix: str = "c") -> list[Peer]:
        """One logged-in peer per form given, each with a fresh id."""
        return [await self.open(form, login=uid(prefix)) for form in forms]


async def first_message(*peers: Peer) -> tuple[Peer, dict]:
    """Whichever of ``peers`` receives a message first, and that message (a recv cancelled by
    websockets loses nothing): which of a sender and its target hears of a message first says
    whether it was refused or delivered, with no timeout to guess by."""
    tasks = {asyncio.ensure_future(peer.recv()): peer for peer in peers}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    results = [(tasks[task], task.result()) for task in done]
    assert len(results) == 1, f"expected one message, got several: {results}"
    return results[0]


def expect_response(
    reply: dict, *, id: str, to: str, frm: str = "server", result: str = "success", **payload: Any
) -> None:
    """The reply is exactly this response (payload: receipt=, code=, data= when expected)."""
    assert reply == {"from": frm, "to": to, "type": "response", "id": id, "payload": {"result": result, **payload}}, (
        reply
    )


def expect_fail(reply: dict, code: str, *, id: str, to: str) -> None:
    expect_response(reply, id=id, to=to, result="fail", code=code)


def expect_error_event(message: dict, code: str, *, to: str, id: Any = ABSENT) -> None:
    """The server event ``wsa@v1/error`` with params {code, reason[, id]}."""
    assert message["from"] == "server" and message["to"] == to and message["type"] == "event", message
    assert ISO_ID.match(message["id"]) or SHORT_ID.match(message["id"]), message
    assert message["payload"]["method"] == "wsa@v1/error", message
    params = message["payload"]["params"]
    assert params["code"] == code, message
    assert isinstance(params["reason"], str) and params["reason"], message
    if id is ABSENT:
        assert set(params) == {"code", "reason"}, message
    else:
        assert set(params) == {"code", "reason", "id"} and params["id"] == id, message


__all__ = [
    "ABSENT",
    "FORMS",
    "ISO_ID",
    "InvalidStatus",
    "NEGOTIATIONS",
    "Peer",
    "Raw",
    "SHORT_ID",
    "SUBPROTOCOL",
    "Clients",
    "GatewayProcess",
    "aio",
    "assert_silent",
    "close_code",
    "dumps",
    "encode",
    "envelope",
    "event",
    "expect_error_event",
    "expect_fail",
    "expect_response",
    "first_message",
    "form_of",
    "http_get",
    "new_id",
    "normalize",
    "open_ws",
    "payload_dict",
    "request",
    "response",
    "running_server",
    "uid",
    "ROOT",
]
