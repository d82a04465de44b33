"""One load-generating process: connect and log in its clients, load for the duration, drain, count.

``Driver(args, part, parts, tag).run(on_tick, barrier)`` returns this process's result dict
(results.py). With ``--procs N`` each of N processes runs a Driver with its share of the
clients and of the rate (procs.py); alone, part 0 of 1 does everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import signal
import ssl
import time
import typing

from picows import WSCloseCode, WSMsgType, ws_connect

from .. import _loadgen
from .._loadgen import Conn, Pacer, Sender, Stats
from ..methods import LOGIN, PING
from . import credentials, messages, proctree, results
from .messages import EVENT_METHOD, message

# Handshakes in flight at once when opening many connections. Below asyncio's listen backlog
# (100): an overflowing accept queue drops SYNs, which the kernel retries only a second later.
CONNECT_CHUNK = 64
TICK_S = 1.0
SETUP_TIMEOUT_S = 10.0
# Relay across nodes: a receiver just logged in on another node is known there a moment later.
PRESENCE_TIMEOUT_S = 10.0
PRESENCE_RETRY_S = 0.05
# --idle: how long the idle connections stay silent before the server's RSS is read.
IDLE_SETTLE_S = 5.0
# Open loop: sends a connection may have in flight before the pacer skips it (the ring is twice this).
OPEN_LOOP_RING = 1 << 17


class SetupError(RuntimeError):
    """The load could not start (connect or login refused): one line for the user.

    ``code`` names the failure for the connect scenario's counts: the fail code, or how connecting failed.
    """

    def __init__(self, text: str, code: str = "SETUP") -> None:
        super().__init__(text)
        self.code = code


def share(total: int, part: int, parts: int) -> tuple[int, int]:
    """(first, count) of ``total`` items that process ``part`` of ``parts`` takes."""
    first = total * part // parts
    return first, total * (part + 1) // parts - first


@contextlib.contextmanager
def collector_paused() -> typing.Iterator[None]:
    """Pause the cyclic garbage collector while connections open, then set what they hold aside.

    Each open connection is about 35 long-lived objects and a login makes no reference cycles, so
    the collector's passes over the growing set find nothing: they were a quarter of the load
    generator's CPU per connection (bench/RESULTS.md, issue 15). Afterwards the survivors are
    frozen (``gc.freeze``): no later pass, in the load or at the close, scans them again.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def pow2(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


class Driver:
    def __init__(self, args, part: int = 0, parts: int = 1, tag: str | None = None) -> None:
        self.a = args
        self.part, self.parts = part, parts
        self.tag = tag or "%04x" % random.randrange(0x10000)
        self.stats = Stats()
        self.conns: list[Conn] = []
        self.senders: list[Sender] = []
        self.mask = bytes(random.randrange(1, 256) for _ in range(4))
        self.compact = args.form == "compact"
        self.ssl_context = self._ssl_context()
        self.ring = OPEN_LOOP_RING if args.rate else pow2(max(4096, 8 * args.window))
        self.setup_s = 0.0
        self.timeline: list[dict] = []
        self.extra: dict = {}

    # ------------------------------------------------------------ connections and logins

    def _ssl_context(self):
        if not any(u.startswith("wss://") for u in (self.a.url, self.a.rx_url or "")):
            return None
        context = ssl.create_default_context(cafile=self.a.ca_file)
        if self.a.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def connect(self, compact: bool, kind: str, url: str | None = None, fail_code: str | None = None) -> Conn:
        ok_key, ok_val = messages.good_reply(compact, kind, fail_code)
        check = _loadgen.CHECK_ID_ONLY if self.a.echo else _loadgen.CHECK_KEY_VALUE
        headers = {"Sec-WebSocket-Protocol": "wsa.v1.compact"} if compact else None
        try:
            _, listener = await ws_connect(
                lambda: Conn(self.stats, compact, check, ok_key, ok_val),
                url or self.a.url,
                ssl_context=self.ssl_context,
                extra_headers=headers,
                websocket_handshake_timeout=SETUP_TIMEOUT_S,
                max_frame_size=1 << 24,
                # uvloop's own connect, as the gateway's listener: aiofastnet's resolves the
                # address in a thread and runs more Python per connection (a fifth of its CPU).
                use_aiofastnet=False,
                local_addr=(self.a.source_address, 0) if self.a.source_address else None,
            )
        except (OSError, asyncio.TimeoutError) as error:
            raise SetupError(
                f"cannot connect to {url or self.a.url}: {error or type(error).__name__}",
                f"connect: {type(error).__name__}",
            ) from None
        except Exception as error:  # picows raises its own upgrade errors (HTTP status, bad handshake)
            raise SetupError(
                f"WebSocket upgrade at {url or self.a.url} failed: {error}", f"upgrade: {type(error).__name__}"
            ) from None
        conn = typing.cast(Conn, listener)
        conn.closed = asyncio.get_running_loop().create_future()
        self.conns.append(conn)
        return conn

    async def login(self, conn: Conn, client_id: str, params) -> None:
        await self.request(conn, client_id, LOGIN, params, "login")

    async def request(self, conn: Conn, frm: str, method: str, params, what: str) -> dict:
        """One request in the setup phase; its success response, else SetupError naming the code."""
        msg = message(conn.compact, frm, "server", "request", method, params, id="setup")
        conn.transport.send(WSMsgType.TEXT, messages.encode(msg))
        try:
            reply = _json(await conn.next_payload(SETUP_TIMEOUT_S))
        except asyncio.TimeoutError:
            raise SetupError(
                f"{what} of {frm or 'an anonymous client'}: no answer in {SETUP_TIMEOUT_S:g}s", f"{what}: no answer"
            ) from None
        body = reply.get("p" if conn.compact else "payload") or {}
        if body.get("r" if conn.compact else "result") not in ("s", "success"):
            code = body.get("c" if conn.compact else "code")
            raise SetupError(f"{what} of {frm or 'an anonymous client'} refused: {code or reply}", str(code))
        return body

    async def connect_many(self, n: int, open_one) -> None:
        """await open_one(k) for k < n, CONNECT_CHUNK at a time: thousands of handshakes take seconds, not minutes."""
        with collector_paused():
            for lo in range(0, n, CONNECT_CHUNK):
                await asyncio.gather(*(open_one(k) for k in range(lo, min(n, lo + CONNECT_CHUNK))))

    def credentials(self, role: str, first: int, count: int, offset: int = 0) -> credentials.Credentials:
        """Logins for clients first..first+count-1 of the run; token files are read from line offset+first on."""
        a = self.a
        names = [f"{role}{first + k}.{self.tag}" for k in range(count)]
        if a.token_file:
            return credentials.from_token_file(a.token_file, offset + first, count)
        if a.jwt_secret:
            return credentials.minted(names, a.jwt_secret, a.jwt_algorithm)
        return credentials.dev(names)

    def sender_for(self, conn: Conn, msg: dict, fanout: int) -> Sender:
        frame, id_pos, id_mask = messages.template(msg, self.mask)
        s = Sender(self.stats, frame, id_pos, id_mask, self.ring, fanout)
        s.attach(conn.transport)
        conn.own = s
        self.senders.append(s)
        return s

    def build(self, make) -> dict:
        """make(pad) -> message, padded to --payload-bytes."""
        return messages.padded(make, self.a.payload_bytes)

    # ------------------------------------------------------------ scenarios

    async def setup(self) -> None:
        a = self.a
        t0 = time.monotonic()
        scenario = a.scenario
        compact = self.compact
        if scenario in ("ping", "call"):
            first, count = share(a.clients, self.part, self.parts)
            creds = self.credentials("c", first, count) if scenario == "call" else None

            async def open_one(k):
                c = await self.connect(compact, "response", fail_code=a.expect_fail)
                if creds is None:
                    msg = self.build(
                        lambda pad: message(compact, "", "server", "request", PING, {"pad": pad} if pad else None)
                    )
                else:
                    cid, params = creds.login(k)
                    await self.login(c, cid, params)
                    msg = self.build(
                        lambda pad: message(compact, cid, "server", "request", a.method, _padded_params(a.params, pad))
                    )
                c.receive_from(self.sender_for(c, msg, 1))

            await self.connect_many(count, open_one)
        elif scenario == "relay":
            first, pairs = share(a.clients // 2, self.part, self.parts)
            creds = self.credentials("p", 2 * first, 2 * pairs)
            rx_compact = a.rx_form == "compact" if a.rx_form else compact

            async def open_pair(k):
                src, src_params = creds.login(2 * k)
                dst, dst_params = creds.login(2 * k + 1)
                tx = await self.connect(compact, "event")
                rx = await self.connect(rx_compact, "event", a.rx_url)
                await self.login(tx, src, src_params)
                await self.login(rx, dst, dst_params)
                await self.reachable(tx, rx, src, dst)
                msg = self.build(lambda pad: message(compact, src, dst, "event", EVENT_METHOD, {"text": pad}))
                rx.receive_from(self.sender_for(tx, msg, 1))

            await self.connect_many(pairs, open_pair)
        elif scenario == "broadcast":
            creds = self.credentials("b", 0, a.clients)
            src, src_params = creds.login(0)
            tx = await self.connect(compact, "event")
            await self.login(tx, src, src_params)
            msg = self.build(lambda pad: message(compact, src, "client", "event", EVENT_METHOD, {"text": pad}))
            snd = self.sender_for(tx, msg, a.clients - 1)

            async def open_receiver(k):
                rx = await self.connect(compact, "event")
                cid, params = creds.login(k + 1)
                await self.login(rx, cid, params)
                rx.receive_from(snd)

            await self.connect_many(a.clients - 1, open_receiver)
        self.setup_s = time.monotonic() - t0
        if a.idle:
            self.extra.update(await self.open_idle())
        for c in self.conns:
            if c.inbox:
                raise SetupError(f"unexpected message before the load started: {c.inbox[0][:200]!r}")
            c.bench = True
            c.pump_sender = not a.rate

    async def reachable(self, tx: Conn, rx: Conn, src: str, dst: str) -> None:
        """Relay: wait until tx's events reach rx (across nodes, presence takes a moment to spread).

        A probe is sent again only after the gateway refused the previous one, so no probe can
        arrive late, in the middle of the load.
        """
        deadline = time.monotonic() + PRESENCE_TIMEOUT_S
        n = 0
        while True:
            n += 1
            # An ISO 8601 id: no load message ever carries one, so the probe cannot be mistaken for load.
            msg = message(tx.compact, src, dst, "event", "bench@v1/probe", None, id=f"2000-01-01T00:00:00.{n:09d}Z")
            tx.transport.send(WSMsgType.TEXT, messages.encode(msg))
            arrived = asyncio.ensure_future(rx.next_payload(PRESENCE_TIMEOUT_S))
            refused = asyncio.ensure_future(tx.next_payload(PRESENCE_TIMEOUT_S))
            done, _ = await asyncio.wait(
                {arrived, refused}, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
            )
            for waiting in (arrived, refused):
                waiting.cancel()
            await asyncio.gather(arrived, refused, return_exceptions=True)
            if arrived in done and not arrived.cancelled() and arrived.exception() is None:
                return
            answer = refused.result() if refused in done and refused.exception() is None else None
            if answer is None or time.monotonic() > deadline:
                raise SetupError(
                    f"events from {src} never reached {dst} in {PRESENCE_TIMEOUT_S:g}s"
                    + (f" (the gateway answered {answer[:200]!r})" if answer else "")
                )
            await asyncio.sleep(PRESENCE_RETRY_S)

    async def open_idle(self) -> dict:
        """--idle N: N more connections that log in and stay silent; with --server-pid, the server RSS they cost."""
        a = self.a
        first, count = share(a.idle, self.part, self.parts)
        creds = self.credentials("i", first, count, offset=a.clients)

        async def open_one(k):
            c = await self.connect(False, "response")  # no sender: any frame it gets is bad
            cid, params = creds.login(k)
            await self.login(c, cid, params)

        before = proctree.rss_bytes(a.server_pid) if a.server_pid else None
        t0 = time.monotonic()
        await self.connect_many(count, open_one)
        setup_s = time.monotonic() - t0
        if before is None:
            return {"idle": count, "idle_setup_s": setup_s}
        after = await settled_rss(a.server_pid)
        return {
            "idle": count,
            "idle_setup_s": setup_s,
            "idle_rss_before": before,
            "idle_rss_after": after,
            "idle_rss_bytes_per_conn": (after - before) / count if count else None,
        }

    # ------------------------------------------------------------ the load

    def snapshot(self) -> dict:
        # process_time is exact (not 10 ms ticks): short runs still get their generator CPU per message.
        snap: dict[str, typing.Any] = {
            "t": time.monotonic(),
            "answered": self.stats.delivered,
            "sent": self.stats.sent,
            "cpu": time.process_time(),
        }
        if self.a.server_pid:
            snap["idle"] = proctree.idle_seconds()
            snap["scan"] = proctree.scan()
            snap["steal"] = proctree.steal_seconds(self.a.server_core) if self.a.server_core >= 0 else 0.0
        return snap

    def tick(self, t: float) -> dict:
        st = self.stats
        hist = results.to_hdr(st.interval)
        st.interval.reset()
        tick = {
            "t": round(t, 3),
            "sent": st.sent,
            "answered": st.delivered,
            "errors": st.failed + st.bad + st.unknown + st.duplicated + st.disconnects,
            # A count, not a pass over the connections: a holder of 10,000 would stall 1-2 ms every tick.
            "connected": len(self.conns) - st.closed,
            "hist": results.encode_hdr(hist),
        }
        self.timeline.append(tick)
        return tick

    async def load(self, on_tick) -> tuple[dict, dict]:
        a = self.a
        st = self.stats
        if a.max_messages:
            st.budget = share(a.max_messages, self.part, self.parts)[1]
        pacer = None
        if a.rate:
            pacer = Pacer(self.senders, a.rate / self.parts, st, self.ring // 2, a.spin)
            pacer.start()
        else:
            for s in self.senders:
                s.start(a.window)
        t0 = time.monotonic()
        warm_end, end = t0 + a.warmup, t0 + a.warmup + a.duration
        st.recording = a.warmup <= 0
        start = self.snapshot()
        next_tick = t0 + TICK_S
        all_sent_at = None  # --max-messages: when the last one went out; the drain starts then
        while True:
            now = time.monotonic()
            if not st.recording and now >= warm_end:
                st.recording = True
                start = self.snapshot()
            if now >= next_tick:
                await _call(on_tick, self.tick(now - t0))
                next_tick += TICK_S
            if all_sent_at is None and 0 <= st.budget <= st.sent:
                all_sent_at = now
            if (
                now >= end
                or self.interrupted.is_set()
                or (
                    all_sent_at is not None
                    and (all(s.outstanding == 0 for s in self.senders) or now >= all_sent_at + a.drain)
                )
            ):
                break
            await asyncio.sleep(max(0.0, min(0.02, end - now, next_tick - now)))
        stop = self.snapshot()
        st.recording = False
        if pacer is not None:
            pacer.stop()
        for s in self.senders:
            s.stop()
        drain_until = (all_sent_at or time.monotonic()) + a.drain
        while time.monotonic() < drain_until and any(s.outstanding > 0 for s in self.senders):
            await asyncio.sleep(0.01)
        if not self.timeline or self.timeline[-1]["t"] < stop["t"] - t0 - TICK_S / 10:
            await _call(on_tick, self.tick(stop["t"] - t0))
        return start, stop

    async def close(self) -> None:
        for c in self.conns:
            c.bench = False
            if c.transport is not None and not c.transport.is_disconnected:
                c.transport.send_close(WSCloseCode.OK)
        waits = [c.closed for c in self.conns if c.closed is not None]
        if waits:
            await asyncio.wait(waits, timeout=2.0)
        for c in self.conns:
            if not c.transport.is_disconnected:
                c.transport.disconnect()

    async def run(self, on_tick=None, barrier=None) -> dict:
        # Ctrl-C ends the load early; the run still drains, counts and reports what it did.
        self.interrupted = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.interrupted.set)
        try:
            if self.a.scenario == "connect":
                from .connect import ConnectScenario

                return await ConnectScenario(self).run(on_tick, barrier)
            await self.setup()
            await _call(barrier)
            start, stop = await self.load(on_tick)
            st = self.stats
            lost = sum(s.leftover() for s in self.senders) + st.lost_overwritten
            counts = {
                "sent": st.sent,
                "answered": st.delivered,
                "failed": st.failed,
                "lost": lost,
                "duplicated": st.duplicated,
                "unknown": st.unknown,
                "garbled": st.bad,
                "skipped": st.skipped,
                "disconnects": st.disconnects,
            }
            return self.result(counts, start, stop)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            await self.close()

    def result(self, counts: dict, start: dict, stop: dict) -> dict:
        """This process's result (results.py), with the local server's CPU when --server-pid was given."""
        a = self.a
        st = self.stats
        dt = stop["t"] - start["t"]
        out = {
            "format": results.FORMAT,
            "scenario": a.scenario,
            "parts": 1,
            "urls": sorted({a.url, a.rx_url or a.url}),
            "settings": settings_of(a),
            "counts": counts,
            "fails": dict(sorted(st.fails.items())),
            "histogram": results.encode_hdr(results.to_hdr(st.latency)),
            "measured": {
                "seconds": dt,
                "sent": stop["sent"] - start["sent"],
                "answered": stop["answered"] - start["answered"],
                "generator_cpu_s": stop["cpu"] - start["cpu"],
            },
            "setup_s": self.setup_s,
            "bad_samples": st.bad_samples,
            "timeline": self.timeline,
            "interrupted": self.interrupted.is_set(),
        }
        if a.server_pid:
            out["server"] = server_usage(a.server_pid, start, stop, out["measured"]["answered"])
        out.update(self.extra)
        return out


def settings_of(a) -> dict:
    keys = (
        "scenario",
        "method",
        "clients",
        "window",
        "rate",
        "spin",
        "duration",
        "warmup",
        "form",
        "rx_form",
        "payload_bytes",
        "procs",
        "max_messages",
        "echo",
        "idle",
    )
    out = {k: getattr(a, k, None) for k in keys}
    out["auth"] = "token-file" if a.token_file else "jwt" if a.jwt_secret else "dev"
    out["loop"] = "open" if a.rate else "closed"
    if a.rate and a.scenario != "connect":
        out["window"] = None  # the pacer, not a window, decides what is in flight
    return out


async def settled_rss(pid: int, quiet: float = IDLE_SETTLE_S) -> int:
    """The server's RSS once the idle connections have been silent for ``quiet`` seconds: a worker frees
    a quiet connection's read buffer at its next sweeps and then gives the heap back (a few seconds)."""
    await asyncio.sleep(quiet)
    return proctree.rss_bytes(pid)


def server_usage(pid: int, start: dict, stop: dict, answered: int) -> dict:
    """CPU of the local server's process tree over the measured window, and what else ran on the machine."""
    dt = stop["t"] - start["t"]
    s0, s1 = start["scan"], stop["scan"]
    t0, t1 = proctree.tree(s0, pid), proctree.tree(s1, pid)
    cpu = proctree.cpu_of(s1, t1) - proctree.cpu_of(s0, t0)
    out = {
        "pid": pid,
        "cpu_s": cpu,
        "util": cpu / dt if dt > 0 else None,
        "cpu_us_per_msg": cpu / answered * 1e6 if answered else None,
    }
    mine = t0 | t1 | {os.getpid()}
    others = proctree.delta_except(s0, s1, mine)
    # Softirq work the kernel defers to ksoftirqd is the loopback TCP stack carrying this run's traffic.
    softirq = sum(v for k, v in others.items() if k.startswith("ksoftirqd"))
    busy = stop["idle"][0] * dt - (stop["idle"][1] - start["idle"][1])
    generator = stop["cpu"] - start["cpu"]
    if dt > 0:
        out["ksoftirqd_util"] = softirq / dt
        # Machine busy time not spent by the server, this process or ksoftirqd: other people's work.
        out["others_util"] = max(0.0, busy - cpu - generator - softirq) / dt
        out["others_top"] = sorted(
            ((k, round(v / dt, 3)) for k, v in others.items() if v > 0 and not k.startswith("ksoftirqd")),
            key=lambda kv: -kv[1],
        )[:4]
        out["steal_util"] = (stop["steal"] - start["steal"]) / dt
    return out


def _padded_params(params, pad: str):
    """--params of a call, with the --payload-bytes pad added as a "pad" key (objects only)."""
    if not pad:
        return params
    if params is None:
        return {"pad": pad}
    if isinstance(params, dict):
        return {**params, "pad": pad}
    raise ValueError("--payload-bytes pads the params object: give --params as an object, or no --params")


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except ValueError:
        raise SetupError(f"the server answered something that is not JSON: {raw[:200]!r}") from None
    if not isinstance(value, dict):
        raise SetupError(f"the server answered a JSON {type(value).__name__}, not a message: {raw[:200]!r}")
    return value


async def _call(fn, *args) -> None:
    if fn is not None:
        value = fn(*args)
        if asyncio.iscoroutine(value):
            await value
