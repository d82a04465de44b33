"""Adversarial soak of routing across workers and nodes: every request gets exactly one response.

About 48 clients (verbose and compact, negotiated by subprotocol or query) on a
``--workers 3`` gateway, or on two nodes joined by a real nats-server, talk to each other
for 15 s while the test churns them: requests to random clients (answered, ignored,
answered twice, answered too late; some in bursts, some with params of ~60 KB, which fill
a 64 KiB batch between workers, or ~100 KB, whose frames need a 64-bit length), events,
broadcasts, requests to ids connected nowhere, a back-to-back duplicate id, server
requests through ``cluster@v1/ask``, clean and abrupt disconnects followed by a new login
with the same id, logins of an id already connected from a new connection (the older
gets 4001), and, on the single gateway, a SIGKILL of one worker in the middle.

Everything is recorded from the clients' side and checked at the end against the rules a
user relies on (docs/protocol.md section 5 and "Across workers and nodes"):

- every request gets exactly one response (success from its target, or fail NOT_FOUND /
  TIMEOUT / GONE / DUPLICATE_ID), within request_timeout plus a grace, on the connection
  that sent it; none for an id never sent;
- no client receives the same (requester, id) twice; requests, events, answers and
  broadcasts arrive byte for byte (params and data untouched) in the receiver's form;
- an answer sent in time reaches the requester (the second of two answers never does);
  a request pending on a client that disconnects ends with GONE; a client logged in for
  longer than the presence lag (``PRESENCE_MARGIN``) and still connected is never
  NOT_FOUND or GONE, and receives what is sent to it;
- a broadcast reaches every other connected client once, and never its sender;
- the gateway writes no traceback, no "Exception ignored" and no ERROR line.

With request_timeout 2 s, requests pending on a killed worker's clients mostly end with
TIMEOUT (the worker is forgotten only after 3.5 s of silence); GONE is required only when
the deadline falls after that, or when the client logs in again elsewhere first.

``SOAK_SEED=<n>`` replays the same random choices (timing still varies).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import time
from typing import Any

import pytest
from nats_server import NatsServer
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from wsa_ws import (
    ABSENT,
    FORMS,
    NEGOTIATIONS,
    GatewayProcess,
    Raw,
    event,
    form_of,
    new_id,
    normalize,
    open_ws,
    request,
    response,
    uid,
)

# Each soak runs about 15 s of traffic, then checks everything; under load it takes a few times that.
pytestmark = [pytest.mark.soak, pytest.mark.timeout(300)]

APP = "tests.apps.cluster_app:app"
REQUEST_TIMEOUT = 2.0
ASK_TIMEOUT = 1.0
CLIENTS = 48
SOAK_SECONDS = 15.0
# How much later than its deadline a response may be read here (a loaded 2-core machine).
GRACE = 1.5
# A login is visible to every worker within milliseconds (docs/protocol.md); a target
# logged in for longer than this must be reachable.
PRESENCE_MARGIN = 0.5
# A killed worker is forgotten after 3.5 s of silence, checked every second.
FORGET = 3.5 + 1.0 + 0.3
FAIL_CODES = {"NOT_FOUND", "TIMEOUT", "GONE", "DUPLICATE_ID", "UNAVAILABLE"}
OTHER_FORM = {"verbose": "compact", "compact": "verbose"}


class Gen:
    """One connection of a client (its n-th)."""

    def __init__(self, client: Client, n: int, form: str, how: str, node: int) -> None:
        self.client = client
        self.cid = client.cid
        self.n = n
        self.form = form
        self.how = how
        self.node = node
        self.ws: Any = None
        self.pid: int | None = None
        self.bound_at: float | None = None
        self.closing_at: float | None = None  # when it stopped counting as connected
        self.why: str | None = None  # voluntary, abort, replaced, killed, unexpected
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.calls: dict[str, asyncio.Future] = {}

    def open_until(self, t: float) -> bool:
        return self.closing_at is None or self.closing_at > t

    def __repr__(self) -> str:
        return (
            f"{self.cid}#{self.n}({self.form}/{self.how}, node {self.node}, pid {self.pid}, "
            f"bound {_t(self.bound_at)}, closing {_t(self.closing_at)} {self.why or ''}, "
            f"closed {_t(self.closed_at)} code {self.close_code})"
        )


class Client:
    def __init__(self, cid: str) -> None:
        self.cid = cid
        self.gens: list[Gen] = []
        self.current: Gen | None = None
        self.busy = False


class Answer:
    __slots__ = ("gen", "which", "data", "receipt", "at", "sent_at")

    def __init__(self, gen: Gen, which: str, data: str, receipt: str, at: float) -> None:
        self.gen, self.which, self.data, self.receipt, self.at = gen, which, data, receipt, at
        self.sent_at: float | None = None

    def __repr__(self) -> str:
        return f"{self.which} answer by {self.gen.cid}#{self.gen.n} at {_t(self.at)} sent {_t(self.sent_at)}"


class Rec:
    """One thing a client sent: request, dup (the same request twice), nobody, event, broadcast or ask."""

    def __init__(
        self, kind: str, gen: Gen, target: str, msg_id: str, method: str, params: str | None, seq: int
    ) -> None:
        self.kind = kind
        self.gen = gen
        self.requester = gen.cid
        self.target = target
        self.id = msg_id
        self.method = method
        self.params = params
        self.seq = seq
        self.plan = "answer"
        self.delay = 0.0
        self.sent_at = 0.0
        self.wall = 0.0
        self.uncertain = False  # the send raised: it may or may not have left
        self.responses: list[tuple[float, Gen, dict, str]] = []
        self.deliveries: list[tuple[float, Gen]] = []
        self.answers: list[Answer] = []
        self.token: str | None = None
        self.server_id: str | None = None
        self.responded = asyncio.Event()  # set by the requester's first response

    def describe(self, soak: Soak) -> str:
        lines = [
            f"  {self.kind} {self.requester} -> {self.target} id {self.id} method {self.method} "
            f"plan {self.plan} delay {self.delay:.2f} sent {_t(self.sent_at)} "
            f"(wall {time.strftime('%H:%M:%S', time.localtime(self.wall))}"
            f"{('%.3f' % (self.wall % 1))[1:]}) on {self.gen!r}"
            f"{' UNCERTAIN' if self.uncertain else ''}"
        ]
        for at, gen, _msg, raw in self.responses:
            lines.append(f"    response at {_t(at)} on {gen.cid}#{gen.n}: {raw}")
        for at, gen in self.deliveries:
            lines.append(f"    delivered at {_t(at)} to {gen.cid}#{gen.n}")
        for answer in self.answers:
            lines.append(f"    {answer!r}")
        if self.target in soak.clients:
            for gen in soak.clients[self.target].gens:
                lines.append(f"    target connection {gen!r}")
        if soak.kill_at is not None:
            lines.append(f"    worker {soak.killed_pid} killed at {_t(soak.kill_at)}")
        return "\n".join(lines)


_T0 = time.monotonic()


def now() -> float:
    return time.monotonic() - _T0


def _t(t: float | None) -> str:
    return "-" if t is None else f"{t:.3f}"


def params_for(seq: int, cid: str) -> str | None:
    """Params as JSON text with odd spacing and escapes: they must arrive byte for byte.

    One in 97 is about 60 KB, so that batches between workers pass their 64 KiB limit; one in
    293 is about 100 KB, so that its WebSocket frame needs the 64-bit length.
    """
    if seq % 293 == 0:
        return f'{{"seq":{seq}, "big":"{("x" * 99 + "é") * 1000}" }}'
    if seq % 97 == 0:
        return f'{{"seq":{seq}, "big":"{("x" * 99 + "é") * 600}" }}'
    kind = seq % 4
    if kind == 0:
        return None
    if kind == 1:
        return f'{{"seq":{seq},"by":"{cid}"}}'
    if kind == 2:
        return (
            f'{{ "seq" : {seq} , "txt":"h\\u00e9llo \\"w\\" \\\\ ✓ 😀","arr":[1, 2.50, -0.0e1 ,null,'
            f'{{"k":[]}}], "by":"{cid}" }}'
        )
    return f'[{seq}, "x" ,true ,{{"deep":[[[]]]}}]'


class Soak:
    def __init__(self, nodes: list[GatewayProcess], seed: int, kill: bool) -> None:
        self.nodes = nodes
        self.rng = random.Random(seed)
        self.seed = seed
        self.kill = kill
        self.clients: dict[str, Client] = {}
        self.recs: dict[tuple[str, str], Rec] = {}
        self.asks: dict[str, Rec] = {}
        self.violations: list[str] = []
        self.notes: list[str] = []
        self.kill_at: float | None = None
        self.killed_pid: int | None = None
        self.stopping = False
        self.tasks: set[asyncio.Task] = set()
        self.seq = 0
        self.lag_max = 0.0
        self.counts: collections.Counter = collections.Counter()
        self.soak_start = 0.0
        self.soak_end = 0.0
        self.outcomes: collections.Counter = collections.Counter()

    # ------------------------------------------------------------ bookkeeping

    def violation(self, text: str) -> None:
        self.violations.append(f"[{_t(now())}] {text}")

    def spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.violation(f"test task failed: {type(exc).__name__}: {exc}")

    async def lag_monitor(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.05)
            self.lag_max = max(self.lag_max, time.monotonic() - before - 0.05)

    # ------------------------------------------------------------ connections

    async def connect(self, client: Client) -> Gen:
        """A new connection for ``client``, logged in as its id; its worker's pid asked for."""
        node = self.rng.randrange(len(self.nodes))
        form = self.rng.choice(FORMS)
        how = self.rng.choice(NEGOTIATIONS)
        gen = Gen(client, len(client.gens), form, how, node)
        gen.ws = await open_ws(self.nodes[node], form, how)
        login_id = new_id()
        await gen.ws.send(request(form, client.cid, "server", login_id, "auth@v1/login"))
        raw = await asyncio.wait_for(gen.ws.recv(), 5)
        reply = json.loads(raw)
        if form_of(reply) != form:
            self.violation(f"login reply in the wrong form on {gen!r}: {raw}")
        reply = normalize(reply)
        if reply != {
            "from": "server",
            "to": client.cid,
            "type": "response",
            "id": login_id,
            "payload": {"result": "success", "receipt": client.cid},
        }:
            self.violation(f"login of {client.cid} failed: {raw}")
            await gen.ws.close()
            raise ConnectionError("login failed")
        gen.bound_at = now()
        client.gens.append(gen)
        self.spawn(self.read(gen))
        try:
            where = await self.call(gen, "cluster@v1/where")
            gen.pid = where["payload"]["data"]["pid"]
        except (asyncio.TimeoutError, ConnectionClosed, asyncio.CancelledError):
            if gen.why is None:
                gen.why, gen.closing_at = "voluntary", now()
                await gen.ws.close()
            raise ConnectionError("where failed") from None
        client.current = gen
        return gen

    async def call(self, gen: Gen, method: str) -> dict:
        msg_id = new_id()
        future = asyncio.get_running_loop().create_future()
        gen.calls[msg_id] = future
        await gen.ws.send(request(gen.form, gen.cid, "server", msg_id, method))
        return await asyncio.wait_for(future, 5)

    async def reconnect(self, client: Client, pause: float = 0.0) -> None:
        await asyncio.sleep(pause)
        for _attempt in range(20):
            try:
                await self.connect(client)
                return
            except (OSError, ConnectionError, ConnectionClosed, InvalidHandshake, asyncio.TimeoutError):
                await asyncio.sleep(0.2)
        self.violation(f"{client.cid} could not reconnect")

    async def reconnect_later(self, client: Client, pause: float) -> None:
        client.busy = True
        try:
            await self.reconnect(client, pause)
        finally:
            client.busy = False

    async def read(self, gen: Gen) -> None:
        try:
            async for raw in gen.ws:
                try:
                    self.on_message(gen, raw)
                except Exception as exc:  # a malformed message: recorded, keep reading
                    self.violation(f"{gen!r} got a message the test cannot read ({exc!r}): {raw!r}")
        except ConnectionClosed:
            pass
        finally:
            gen.closed_at = now()
            rcvd = gen.ws.protocol.close_rcvd
            gen.close_code = rcvd.code if rcvd is not None else None
            for future in gen.calls.values():
                if not future.done():
                    future.cancel()
            self.on_closed(gen)

    def on_closed(self, gen: Gen) -> None:
        client = gen.client
        if gen.why is None:
            if (
                self.kill_at is not None
                and gen.close_code is None
                and gen.closed_at >= self.kill_at
                and gen.pid in (None, self.killed_pid)
            ):
                gen.why, gen.closing_at = "killed", self.kill_at
            else:
                gen.why, gen.closing_at = "unexpected", gen.closed_at
                self.violation(
                    f"connection lost unexpectedly (close code from the server: {gen.close_code}; "
                    f"None: no close frame, or the client failed it on a protocol error): {gen!r}"
                )
        if gen.why == "replaced" and gen.close_code != 4001:
            self.violation(f"a replaced connection closed with {gen.close_code}, not 4001: {gen!r}")
        if gen.why in ("killed", "unexpected") and client.current is gen:
            client.current = None
            if not client.busy and not self.stopping:
                self.spawn(self.reconnect_later(client, self.rng.uniform(0.1, 1.0)))

    # ------------------------------------------------------------ receiving

    def on_message(self, gen: Gen, raw: Any) -> None:
        t = now()
        if not isinstance(raw, str):
            self.violation(f"{gen!r} got a binary frame: {raw!r}")
            return
        obj = json.loads(raw)
        if form_of(obj) != gen.form:
            self.violation(f"{gen!r} got a message in the other form: {raw}")
        msg = normalize(obj)
        kind = msg["type"]
        payload = msg["payload"]
        if kind == "response":
            if msg["to"] != gen.cid:
                self.violation(f"{gen!r} got a response addressed to {msg['to']}: {raw}")
            future = gen.calls.pop(msg["id"], None)
            if future is not None:
                if not future.done():
                    future.set_result(msg)
                return
            rec = self.recs.get((gen.cid, msg["id"]))
            if rec is None or rec.kind == "broadcast":
                self.violation(f"{gen!r} got a response for an id it never sent: {raw}")
                return
            rec.responses.append((t, gen, msg, raw))
            rec.responded.set()
            return
        if kind == "request":
            if msg["from"] == "server":
                token = (payload.get("params") or {}).get("token")
                rec = self.asks.get(token)
                if rec is None or msg["to"] != gen.cid or rec.target != gen.cid:
                    self.violation(f"{gen!r} got a server request nobody asked for: {raw}")
                    return
                if rec.deliveries:
                    self.violation(f"{gen!r} got a server request a second time: {raw}\n{rec.describe(self)}")
                rec.deliveries.append((t, gen))
                rec.server_id = msg["id"]
                if raw != request(gen.form, "server", gen.cid, msg["id"], "soak@v1/ask", {"token": token}):
                    self.violation(f"{gen!r} got a server request not as sent: {raw}")
                if rec.plan == "answer":
                    self.spawn(self.answer_server(gen, rec, msg["id"]))
                return
            rec = self.recs.get((msg["from"], msg["id"]))
            if rec is None or rec.kind not in ("request", "dup"):
                self.violation(f"{gen!r} got a request nobody sent: {raw}")
                return
            if msg["to"] != gen.cid or rec.target != gen.cid:
                self.violation(f"{gen!r} got a request addressed elsewhere: {raw}\n{rec.describe(self)}")
            expected = request(
                gen.form,
                rec.requester,
                rec.target,
                rec.id,
                rec.method,
                ABSENT if rec.params is None else Raw(rec.params),
            )
            if raw != expected:
                self.violation(
                    f"{gen!r} got a request not byte for byte as sent:\n  got      {raw}\n  expected {expected}"
                )
            if rec.deliveries:
                self.violation(f"a request was delivered twice (now to {gen.cid}#{gen.n}):\n{rec.describe(self)}")
            rec.deliveries.append((t, gen))
            if rec.plan != "ignore":
                self.spawn(self.answer(gen, rec))
            return
        # an event
        if msg["from"] == "server":
            self.violation(f"{gen!r} got a server event: {raw}")
            return
        rec = self.recs.get((msg["from"], msg["id"]))
        if msg["to"] == "client":
            if rec is None or rec.kind != "broadcast":
                self.violation(f"{gen!r} got a broadcast nobody sent: {raw}")
                return
            expected = event(
                gen.form, rec.requester, "client", rec.id, rec.method, ABSENT if rec.params is None else Raw(rec.params)
            )
            if raw != expected:
                self.violation(
                    f"{gen!r} got a broadcast not byte for byte as sent:\n  got      {raw}\n  expected {expected}"
                )
            if any(g is gen for _, g in rec.deliveries):
                self.violation(f"a broadcast reached {gen.cid}#{gen.n} twice:\n{rec.describe(self)}")
            if gen is rec.gen:
                self.violation(f"a broadcast reached its own sender:\n{rec.describe(self)}")
            elif gen.cid == rec.requester:
                self.notes.append(f"a broadcast from {rec.requester}#{rec.gen.n} reached its newer connection #{gen.n}")
            rec.deliveries.append((t, gen))
            return
        if rec is None or rec.kind != "event":
            self.violation(f"{gen!r} got an event nobody sent: {raw}")
            return
        if msg["to"] != gen.cid or rec.target != gen.cid:
            self.violation(f"{gen!r} got an event addressed elsewhere: {raw}")
        expected = event(
            gen.form, rec.requester, rec.target, rec.id, rec.method, ABSENT if rec.params is None else Raw(rec.params)
        )
        if raw != expected:
            self.violation(f"{gen!r} got an event not byte for byte as sent:\n  got      {raw}\n  expected {expected}")
        if rec.deliveries:
            self.violation(f"an event was delivered twice:\n{rec.describe(self)}")
        rec.deliveries.append((t, gen))

    async def answer(self, gen: Gen, rec: Rec) -> None:
        if rec.kind == "dup":
            # DUPLICATE_ID holds only while the first copy is pending, and the second copy may leave the
            # requester late (its send waits for the socket to drain): answer once the requester has the
            # response to the second copy. Bounded, so a gateway that never answers it fails the checks.
            try:
                await asyncio.wait_for(rec.responded.wait(), REQUEST_TIMEOUT)
            except asyncio.TimeoutError:
                pass
        await asyncio.sleep(rec.delay)
        if gen.why in ("voluntary", "abort"):
            return  # this client has hung up
        form = gen.form if self.rng.random() < 0.8 else OTHER_FORM[gen.form]
        data = f'{{"echo":{rec.seq} , "by":"{gen.cid}#{gen.n}", "u":"\\u00e9✓"}}'
        first = Answer(gen, "first", data, f"r{rec.seq}", now())
        rec.answers.append(first)
        try:
            await gen.ws.send(
                response(form, gen.cid, rec.requester, rec.id, "success", receipt=first.receipt, data=Raw(data))
            )
        except ConnectionClosed:
            return
        first.sent_at = now()
        if rec.plan == "twice":
            await asyncio.sleep(self.rng.choice([0.0, 0.0, 0.01, 0.2]))
            second = Answer(gen, "second", f'{{"echo":{rec.seq},"second":true}}', "again", now())
            rec.answers.append(second)
            try:
                await gen.ws.send(
                    response(
                        form, gen.cid, rec.requester, rec.id, "success", receipt=second.receipt, data=Raw(second.data)
                    )
                )
            except ConnectionClosed:
                return
            second.sent_at = now()

    async def answer_server(self, gen: Gen, rec: Rec, server_id: str) -> None:
        await asyncio.sleep(rec.delay)
        if gen.why in ("voluntary", "abort"):
            return
        first = Answer(gen, "first", json.dumps({"tok": rec.token}), "ack", now())
        rec.answers.append(first)
        try:
            await gen.ws.send(
                response(gen.form, gen.cid, "server", server_id, "success", receipt="ack", data={"tok": rec.token})
            )
        except ConnectionClosed:
            return
        first.sent_at = now()

    # ------------------------------------------------------------ sending

    def other(self, cid: str) -> str:
        while True:
            target = self.rng.choice(list(self.clients))
            if target != cid:
                return target

    def new_rec(self, kind: str, gen: Gen, target: str, method: str, with_params: bool = True) -> Rec:
        self.seq += 1
        rec = Rec(kind, gen, target, new_id(), method, params_for(self.seq, gen.cid) if with_params else None, self.seq)
        self.recs[(gen.cid, rec.id)] = rec
        self.counts[kind] += 1
        return rec

    async def send(self, rec: Rec, text: str, times: int = 1) -> None:
        rec.sent_at, rec.wall = now(), time.time()
        try:
            for _ in range(times):
                await rec.gen.ws.send(text)
        except ConnectionClosed:
            rec.uncertain = True

    def sending_form(self, gen: Gen) -> str:
        return gen.form if self.rng.random() < 0.8 else OTHER_FORM[gen.form]

    async def send_request(self, gen: Gen, kind: str = "request") -> None:
        target = uid("nobody") if kind == "nobody" else self.other(gen.cid)
        rec = self.new_rec(kind, gen, target, "soak@v1/req")
        roll = self.rng.random()
        if kind == "request":
            if roll < 0.70:
                rec.plan, rec.delay = "answer", self.rng.choice([0.0, 0.0, 0.02, 0.1, self.rng.uniform(0, 1.0)])
            elif roll < 0.80:
                rec.plan = "ignore"
            elif roll < 0.95:
                rec.plan, rec.delay = "twice", self.rng.choice([0.0, 0.05, 0.3])
            else:
                rec.plan, rec.delay = "late", REQUEST_TIMEOUT + self.rng.uniform(0.3, 0.8)
        text = request(
            self.sending_form(gen),
            gen.cid,
            target,
            rec.id,
            rec.method,
            ABSENT if rec.params is None else Raw(rec.params),
        )
        await self.send(rec, text, 2 if kind == "dup" else 1)

    async def send_event(self, gen: Gen, broadcast: bool) -> None:
        target = "client" if broadcast else self.other(gen.cid)
        rec = self.new_rec(
            "broadcast" if broadcast else "event", gen, target, "soak@v1/news" if broadcast else "soak@v1/note"
        )
        text = event(
            self.sending_form(gen),
            gen.cid,
            target,
            rec.id,
            rec.method,
            ABSENT if rec.params is None else Raw(rec.params),
        )
        await self.send(rec, text)

    async def send_ask(self, gen: Gen) -> None:
        target = self.other(gen.cid)
        rec = self.new_rec("ask", gen, target, "cluster@v1/ask", with_params=False)
        rec.token = f"t{rec.seq}"
        rec.plan = "ignore" if self.rng.random() < 0.15 else "answer"
        rec.delay = self.rng.choice([0.0, 0.05, 0.2])
        self.asks[rec.token] = rec
        params = {"target": target, "method": "soak@v1/ask", "params": {"token": rec.token}, "timeout": ASK_TIMEOUT}
        await self.send(rec, request(gen.form, gen.cid, "server", rec.id, rec.method, params))

    async def sender(self, client: Client) -> None:
        while not self.stopping:
            await asyncio.sleep(self.rng.expovariate(1 / 0.15))
            gen = client.current
            if gen is None or gen.closing_at is not None or self.stopping:
                continue
            roll = self.rng.random()
            if roll < 0.66:
                await self.send_request(gen)
            elif roll < 0.78:
                await self.send_event(gen, broadcast=False)
            elif roll < 0.81:
                await self.send_event(gen, broadcast=True)
            elif roll < 0.85:
                await self.send_request(gen, "nobody")
            elif roll < 0.88:
                await self.send_request(gen, "dup")
            elif roll < 0.98:
                await self.send_ask(gen)
            else:
                for _ in range(self.rng.randint(5, 30)):  # a burst: one read batch, one NATS batch
                    if gen.closing_at is not None:
                        break
                    await self.send_request(gen)

    # ------------------------------------------------------------ churn

    def idle_client(self) -> Client | None:
        ready = [c for c in self.clients.values() if c.current is not None and not c.busy]
        return self.rng.choice(ready) if ready else None

    async def bounce(self, client: Client) -> None:
        """Disconnect (cleanly or by a TCP abort) and log in again with the same id."""
        client.busy = True
        try:
            gen = client.current
            client.current = None
            gen.why = "abort" if self.rng.random() < 0.3 else "voluntary"
            gen.closing_at = now()
            self.counts[f"disconnect-{gen.why}"] += 1
            if gen.why == "abort":
                gen.ws.transport.abort()
            else:
                await gen.ws.close()
            await self.reconnect(client, self.rng.uniform(0.0, 0.5))
        finally:
            client.busy = False

    async def replace(self, client: Client) -> None:
        """Log in again with a connected id from a new connection: the older must get 4001."""
        client.busy = True
        try:
            gen = client.current
            client.current = None
            gen.why, gen.closing_at = "replaced", now()
            self.counts["duplicate-login"] += 1
            await self.reconnect(client)
        finally:
            client.busy = False

    async def churn(self) -> None:
        next_replace = now() + 1.5
        while not self.stopping:
            await asyncio.sleep(self.rng.uniform(0.25, 0.6))
            if self.stopping:
                break
            client = self.idle_client()
            if client is None:
                continue
            if now() >= next_replace:
                next_replace = now() + self.rng.uniform(1.2, 2.2)
                self.spawn(self.replace(client))
            else:
                self.spawn(self.bounce(client))

    async def killer(self, at: float) -> None:
        await asyncio.sleep(at)
        pids = collections.Counter(
            c.current.pid for c in self.clients.values() if c.current is not None and c.current.pid is not None
        )
        pid = pids.most_common(1)[0][0]
        self.kill_at, self.killed_pid = now(), pid
        for client in self.clients.values():
            for gen in client.gens:
                # A connection being replaced whose close has not come yet dies with its worker, 4001 unsent.
                replacing = gen.why == "replaced" and gen.closed_at is None
                if gen.pid == pid and (gen.closing_at is None or replacing):
                    gen.why, gen.closing_at = "killed", self.kill_at
        self.counts["killed-connections"] = sum(1 for c in self.clients.values() for g in c.gens if g.why == "killed")
        os.kill(pid, signal.SIGKILL)

    # ------------------------------------------------------------ the run

    async def run(self) -> None:
        monitor = asyncio.ensure_future(self.lag_monitor())
        try:
            for _ in range(CLIENTS):
                cid = uid("soak")
                self.clients[cid] = Client(cid)
            gate = asyncio.Semaphore(8)

            async def first(client: Client) -> None:
                async with gate:
                    await self.connect(client)

            await asyncio.gather(*(first(c) for c in self.clients.values()))
            pids = {c.current.pid for c in self.clients.values()}
            self.counts["worker-processes"] = len(pids)
            await asyncio.sleep(PRESENCE_MARGIN + 0.2)
            self.soak_start = now()
            senders = [self.spawn(self.sender(c)) for c in self.clients.values()]
            churn = self.spawn(self.churn())
            if self.kill:
                self.spawn(self.killer(SOAK_SECONDS * 0.4))
            await asyncio.sleep(SOAK_SECONDS)
            self.stopping = True
            self.soak_end = now()
            await asyncio.gather(*senders, churn, return_exceptions=True)
            # Past every deadline: every request has had its one response.
            await asyncio.sleep(REQUEST_TIMEOUT + GRACE + 1.0)
            self.evaluate()
        finally:
            monitor.cancel()
            for client in self.clients.values():
                for gen in client.gens:
                    if gen.closed_at is None and gen.why is None:
                        gen.why, gen.closing_at = "voluntary", now()
            await asyncio.gather(
                *(g.ws.close() for c in self.clients.values() for g in c.gens if g.closed_at is None),
                return_exceptions=True,
            )
            for task in list(self.tasks):
                task.cancel()

    # ------------------------------------------------------------ the verdict

    def stable(self, cid: str, start: float, end: float) -> bool:
        """Whether ``cid`` had one connection bound from before ``start`` until after ``end``."""
        client = self.clients.get(cid)
        if client is None:
            return False
        return any(g.bound_at is not None and g.bound_at <= start and g.open_until(end) for g in client.gens)

    def evaluate(self) -> None:
        lateness = REQUEST_TIMEOUT + GRACE + self.lag_max
        outcomes: collections.Counter = collections.Counter()
        for rec in self.recs.values():
            bad = []
            gen = rec.gen
            horizon = rec.sent_at + (ASK_TIMEOUT if rec.kind == "ask" else REQUEST_TIMEOUT) + GRACE
            abandoned = rec.uncertain or not gen.open_until(horizon)
            for at, g, _msg, _raw in rec.responses:
                if g is not gen:
                    bad.append(f"a response arrived on {g.cid}#{g.n}, not on the connection that sent it")
                if at - rec.sent_at > lateness:
                    bad.append(f"a response came {at - rec.sent_at:.2f}s after the request")
            codes = [msg["payload"].get("code", msg["payload"]["result"]) for _, _, msg, _ in rec.responses]
            outcomes[(rec.kind, tuple(sorted(codes)))] += 1
            if rec.kind == "broadcast":
                self.check_broadcast(rec, bad)
            elif rec.kind == "event":
                self.check_event(rec, codes, bad)
            elif rec.kind == "ask":
                self.check_ask(rec, codes, abandoned, bad)
            elif rec.kind == "dup":
                self.check_dup(rec, codes, abandoned, bad)
            else:
                self.check_request(rec, codes, abandoned, bad)
            for text in bad:
                self.violation(f"{text}:\n{rec.describe(self)}")
        self.outcomes = outcomes
        for client in self.clients.values():
            for gen in client.gens:
                if gen.why == "replaced" and (gen.closed_at is None or gen.closed_at - gen.closing_at > 3.0):
                    self.violation(f"a replaced connection was not closed within 3 s: {gen!r}")

    def check_request(self, rec: Rec, codes: list[str], abandoned: bool, bad: list[str]) -> None:
        if len(codes) > 1:
            bad.append(f"{len(codes)} responses to one request")
        if not codes:
            if not abandoned:
                bad.append("no response at all")
            return
        code = codes[0]
        at, _, msg, raw = rec.responses[0]
        if rec.kind == "nobody":
            if code != "NOT_FOUND":
                bad.append(f"a request to an id connected nowhere got {code}")
            return
        target_stable = self.stable(rec.target, rec.sent_at - PRESENCE_MARGIN, rec.sent_at + REQUEST_TIMEOUT + GRACE)
        delivered = rec.deliveries[0][1] if rec.deliveries else None
        first = next((a for a in rec.answers if a.which == "first"), None)
        answered_in_time = (
            first is not None
            and first.sent_at is not None
            and first.sent_at <= rec.sent_at + REQUEST_TIMEOUT - 0.5
            and (first.gen.why not in ("replaced", "killed") or first.sent_at < first.gen.closing_at - 0.5)
        )
        if code == "success":
            if msg["from"] != rec.target:
                bad.append("a success not from the target")
            if delivered is None:
                bad.append("a success for a request never delivered")
            matches = [
                a
                for a in rec.answers
                if raw
                == response(
                    rec.gen.form, rec.target, rec.requester, rec.id, "success", receipt=a.receipt, data=Raw(a.data)
                )
            ]
            if not matches:
                bad.append("the answer did not arrive byte for byte as sent")
            elif matches[0].which != "first":
                bad.append("the requester got the SECOND answer (the first must win, the second be dropped)")
            if rec.plan == "late":
                bad.append("an answer sent after the request timed out was delivered")
            return
        if raw != response(rec.gen.form, "server", rec.requester, rec.id, "fail", code=code):
            bad.append("the failure is not exactly the server's fail response")
        if code not in FAIL_CODES:
            bad.append(f"unexpected code {code}")
        if code in ("DUPLICATE_ID", "UNAVAILABLE"):
            bad.append(f"{code} for a unique id with NATS up")
        if code == "NOT_FOUND":
            if delivered is not None:
                bad.append("NOT_FOUND for a request that was delivered")
            if target_stable:
                bad.append("NOT_FOUND for a target connected for long before and after")
        if code == "GONE" and target_stable:
            bad.append("GONE for a target connected for long before and after")
        if code in ("GONE", "TIMEOUT", "NOT_FOUND") and answered_in_time and rec.plan in ("answer", "twice"):
            bad.append(f"the target answered in time ({first!r}) but the requester got {code}")
        if code == "TIMEOUT":
            if target_stable and delivered is None:
                bad.append("TIMEOUT: a request to a connected target was never delivered")
            if delivered is not None and not answered_in_time:
                closing = delivered.closing_at
                if delivered.why in ("voluntary", "abort") and closing < rec.sent_at + REQUEST_TIMEOUT - 0.5:
                    bad.append("TIMEOUT, not GONE, though the target disconnected while the request was pending")
                if delivered.why == "replaced" and closing < rec.sent_at + REQUEST_TIMEOUT - 0.8:
                    bad.append("TIMEOUT, not GONE, though the target was replaced while the request was pending")
                if delivered.why == "killed" and closing + FORGET < rec.sent_at + REQUEST_TIMEOUT - 0.2:
                    bad.append("TIMEOUT, not GONE, though the target's worker died long before the deadline")
        if code == "GONE" and delivered is not None and delivered.closing_at is None:
            self.notes.append(
                f"GONE for {rec.requester}/{rec.id} though delivered to {delivered.cid}#{delivered.n}, "
                f"which stayed connected"
            )

    def check_dup(self, rec: Rec, codes: list[str], abandoned: bool, bad: list[str]) -> None:
        if len(codes) > 2 or (len(codes) < 2 and not abandoned):
            bad.append(f"{len(codes)} responses to a request sent twice with one id")
        if "DUPLICATE_ID" in codes:
            if codes.count("DUPLICATE_ID") > 1:
                bad.append("DUPLICATE_ID twice")
            if len(rec.deliveries) > 1:
                bad.append("DUPLICATE_ID, yet the request was delivered twice")
        elif codes and set(codes) - {"NOT_FOUND"}:
            bad.append(f"the same id sent twice back to back got {codes}, no DUPLICATE_ID")

    def check_event(self, rec: Rec, codes: list[str], bad: list[str]) -> None:
        if len(codes) > 1:
            bad.append(f"{len(codes)} responses to one event")
        sender_ok = rec.gen.open_until(rec.sent_at + 1.0) or rec.gen.why == "voluntary"
        target_stable = self.stable(rec.target, rec.sent_at - PRESENCE_MARGIN, rec.sent_at + 1.0)
        if codes:
            if codes[0] != "NOT_FOUND":
                bad.append(f"an event got {codes[0]}")
            if rec.deliveries:
                bad.append("NOT_FOUND for an event that was delivered")
            if target_stable:
                bad.append("NOT_FOUND for an event to a target connected for long before and after")
        elif target_stable and sender_ok and not rec.uncertain and not rec.deliveries:
            bad.append("an event to a connected target was lost")

    def check_broadcast(self, rec: Rec, bad: list[str]) -> None:
        if rec.uncertain:
            return
        if not (rec.gen.open_until(rec.sent_at + 1.0) or rec.gen.why == "voluntary"):
            return
        got = {id(g) for _, g in rec.deliveries}
        missing = [
            g
            for c in self.clients.values()
            for g in c.gens
            if g is not rec.gen
            and g.bound_at is not None
            and g.bound_at <= rec.sent_at
            and g.open_until(rec.sent_at + 1.0)
            and id(g) not in got
        ]
        if missing:
            bad.append(
                f"a broadcast missed {len(missing)} connected clients: "
                + ", ".join(f"{g.cid}#{g.n}(pid {g.pid})" for g in missing[:8])
            )

    def check_ask(self, rec: Rec, codes: list[str], abandoned: bool, bad: list[str]) -> None:
        if len(codes) > 1:
            bad.append(f"{len(codes)} responses to one server request")
        if not codes:
            if not abandoned:
                bad.append("no response to cluster@v1/ask")
            return
        at, _, msg, raw = rec.responses[0]
        data = msg["payload"].get("data")
        if msg["from"] != "server" or codes[0] != "success" or not isinstance(data, dict):
            bad.append("cluster@v1/ask did not succeed with data")
            return
        target_stable = self.stable(rec.target, rec.sent_at - PRESENCE_MARGIN, rec.sent_at + ASK_TIMEOUT + GRACE)
        first = rec.answers[0] if rec.answers else None
        answered_in_time = (
            first is not None
            and first.sent_at is not None
            and first.sent_at <= rec.sent_at + ASK_TIMEOUT - 0.4
            and first.gen.why not in ("replaced", "killed")
        )
        if "result" in data:
            if data != {"result": "success", "receipt": "ack", "data": {"tok": rec.token}}:
                bad.append("the server's request got an answer not as sent")
            if not rec.deliveries or first is None:
                bad.append("the server's request succeeded without being delivered and answered")
            return
        error = data.get("error")
        if error not in ("NOT_FOUND", "TIMEOUT", "GONE"):
            bad.append(f"the server's request failed with {error}")
        if error in ("NOT_FOUND", "GONE") and target_stable:
            bad.append(f"{error} for a server request to a target connected for long before and after")
        if error == "NOT_FOUND" and rec.deliveries:
            bad.append("NOT_FOUND for a server request that was delivered")
        if answered_in_time:
            bad.append(f"the target answered the server's request in time but the server saw {error}")
        if error == "TIMEOUT" and target_stable and not rec.deliveries:
            bad.append("a server request to a connected target was never delivered")

    def report(self, logs: str) -> str:
        deliveries = collections.Counter()
        for rec in self.recs.values():
            deliveries[rec.kind] += len(rec.deliveries)
        lines = [
            f"seed {self.seed}; loop lag max {self.lag_max:.3f}s; counts {dict(self.counts)}",
            f"deliveries {dict(deliveries)}; violations {len(self.violations)}",
        ]
        for (kind, codes), n in sorted(self.outcomes.items()):
            lines.append(f"  {kind:9} {'/'.join(codes) or '(none)':28} {n}")
        if self.notes:
            lines.append(f"notes ({len(self.notes)}):")
            lines += [f"  {n}" for n in self.notes[:20]]
        return "\n".join(lines)


def check_log(log: str, soak: Soak) -> None:
    """No ERROR line, no traceback, no exception swallowed by compiled code ("Exception ignored in")."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if " ERROR " in line or " CRITICAL " in line:
            soak.violation(f"the gateway logged: {line}")
        elif line.startswith("Exception ignored in") or (
            line.startswith("Traceback (most recent call last)")
            and not (i and lines[i - 1].startswith("Exception ignored in"))
        ):
            context = "\n    ".join(lines[max(0, i - 1) : i + 5])
            soak.violation(f"the gateway wrote an exception:\n    {context}")


def run_soak(nodes: list[GatewayProcess], kill: bool) -> Soak:
    seed = int(os.environ.get("SOAK_SEED") or random.randrange(1 << 30))
    soak = Soak(nodes, seed, kill)
    started = time.monotonic()
    asyncio.run(asyncio.wait_for(soak.run(), SOAK_SECONDS + 25))
    print(f"\nsoak ran {time.monotonic() - started:.1f}s")
    return soak


def finish(soak: Soak, logs: str) -> None:
    check_log(logs, soak)
    summary = soak.report(logs)
    print(summary)
    if soak.violations:
        # The gateway's own complaints first: they usually explain what the clients saw.
        ordered = sorted(soak.violations, key=lambda v: "the gateway" not in v)
        shown = "\n".join(ordered[:25])
        more = f"\n... and {len(soak.violations) - 25} more" if len(soak.violations) > 25 else ""
        pytest.fail(
            f"{len(soak.violations)} invariant violations\n{summary}\n{shown}{more}\n"
            f"--- gateway log (last 60 lines) ---\n" + "\n".join(logs.splitlines()[-60:]),
            pytrace=False,
        )


def gateway(*args: str) -> GatewayProcess:
    # Tracebacks are checked by finish(), so that they are reported with what the clients saw.
    # The soak's invariants are about routing under churn; per-client rate limits (which refuse a
    # freshly reconnected client's second broadcast) are tested in test_limits.py.
    return GatewayProcess(
        *args, "--request-timeout", str(REQUEST_TIMEOUT), "--app", APP, "--limits", "off", allow_tracebacks=True
    )


def test_soak_three_workers_with_a_killed_worker() -> None:
    with gateway("--workers", "3") as server:
        soak = run_soak([server], kill=True)
    finish(soak, server.log)
    assert "was killed by SIGKILL" in server.log and "restarted" in server.log, server.log


def test_soak_two_nodes_on_one_nats_server() -> None:
    with NatsServer() as nats, gateway("--nats", nats.url, "--workers", "2") as one, gateway("--nats", nats.url) as two:
        soak = run_soak([one, two], kill=False)
    finish(soak, one.log + two.log)
