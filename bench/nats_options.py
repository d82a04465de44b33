"""How to route WSA messages between workers over NATS: the options, measured.

    . /work/venv/bin/activate
    python bench/nats_options.py                  # about 35 s: tables on stdout, progress on stderr
    python bench/nats_options.py --duration 1     # quicker and noisier

The script starts its own nats-server (``wsa_fast.embedded_nats.EmbeddedNats``) and, for
each option, a publisher process and a subscriber process, each on uvloop with
``wsa_fast.nats_client.NatsClient``. Nothing is pinned: the two processes and the
nats-server share the machine's cores. Messages are ~100-byte JSON, like a routed WSA
message; a batch record is 1 tag byte + a 4-byte little-endian length + that JSON.

Throughput (``--duration`` seconds each): the publisher sends as fast as it can, in
chunks of ~256 records with an event-loop turn between chunks, and keeps at most
``WINDOW`` records unacknowledged: the subscriber publishes its running count on
``bench.ack`` every ``ACK_EVERY`` records. So nothing piles up in the nats-server and no
connection becomes a slow consumer (the script checks the nats-server log for one). At the
end the publisher announces how many records it sent on ``bench.end``; the row counts only
if the subscriber received exactly that many.

- (a) per-client subjects: one NATS message per WSA message, to ``wsa.c.<client id>`` over
  ``--clients`` ids (1,000), the subscriber holding one subscription per id.
- (b) per-worker subject, unbatched: one NATS message per WSA message to ``wsa.w.X``.
  (``NatsClient`` writes a loop iteration's publishes in one system call either way.)
- (c) per-worker subject, batched: 64 (and 512) records per NATS message to ``wsa.w.X``;
  the publisher joins the records, the subscriber splits each batch and counts records.
- (d) a directory lookup per message (what NATS KV or any request/reply directory costs):
  a requester publishes a request with a reply subject and waits for the answer, one at
  a time, ``--lookups`` times (after 200 untimed); a responder process answers.
- (e) presence propagation: a worker publishes an announcement on ``wsa.presence``
  carrying ``time.monotonic_ns()``; another process reads it and records the one-way
  delay (CLOCK_MONOTONIC is one clock for every process on Linux), then acknowledges, and
  only then is the next one sent: ``--announcements`` times, sequential.
- (f) nats-py: the batched x64 scenario of (c) with both processes on ``nats-py`` (the
  asyncio NATS client) instead of ``wsa_fast.nats_client``: whether to use it or ours.

messages/s is records delivered per second, from the publisher's first send to the
subscriber's last record. CPU per message is user+system time (psutil) of the
publisher, the subscriber and the nats-server, read just before the publisher starts and
just after the subscriber has everything, divided by the records delivered. The kernel counts
in clock ticks (10 ms), so a CPU figure under ~0.05 s per run is coarse; the notes give the
CPU seconds behind each row. For (d) and (e) the CPU columns are per round trip (requester
or announcer in the publisher column, responder or receiver in the subscriber column).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import select
import shlex
import statistics
import struct
import subprocess
import sys
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

WINDOW = 32768  # records the publisher may have sent that the subscriber has not acknowledged
ACK_EVERY = 1024  # the subscriber acknowledges every this many records
CHUNK = 256  # records published between event-loop turns
REPLY = b"wsa.w.P"  # the gateway publishes each batch with its own subject as reply-to
ACK, END = b"bench.ack", b"bench.end"
LOOKUP, INBOX = b"dir.lookup", b"_INBOX.bench.requester"
PRESENCE, PRESENCE_ACK = b"wsa.presence", b"bench.presence.ack"
TAG = 1
RECORD_HEAD = struct.Struct("<BI")
WARMUP_LOOKUPS = 200


def client_ids(n: int) -> list[str]:
    return [f"user-{i:06d}" for i in range(n)]


def wsa_message(i: int, to: str) -> bytes:
    """A ~100-byte routed WSA message."""
    body = b'{"to":"%s","from":"user-%06d","method":"chat.say","id":%d,"params":{"text":"' % (
        to.encode(),
        (i * 7919) % 1000000,
        100000 + i,
    )
    return body + b"x" * max(1, 98 - len(body)) + b'"}}'


def record(i: int, to: str) -> bytes:
    body = wsa_message(i, to)
    return RECORD_HEAD.pack(TAG, len(body)) + body


# ---------------------------------------------------------------- child processes


def say(kind: str, **data) -> None:
    sys.stdout.write(json.dumps({"kind": kind, **data}) + "\n")
    sys.stdout.flush()


async def stdin_line() -> str:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


async def connected(cfg: dict, name: str):
    if cfg.get("client") == "nats-py":
        import nats

        return NatsPy(await nats.connect(cfg["url"], name=name))
    from wsa_fast.nats_client import NatsClient, parse_servers

    client = NatsClient(parse_servers(cfg["url"]), name)
    await client.connect(10.0)
    return client


class NatsPy:
    """(f): nats-py, the asyncio NATS client, behind the calls the roles make of ours.

    Its publish is a coroutine: the source awaits it in the send loop; the rare publishes
    made from callbacks (acknowledgements) run as tasks. Its subscriptions deliver each
    message to an async callback from a task per subscription, as nats-py is used.
    """

    def __init__(self, nc) -> None:
        self.nc = nc
        self.loop = asyncio.get_running_loop()
        self.subscribing: list = []
        self.tasks: set = set()

    def subscribe(self, subject: bytes, callback) -> None:
        async def handler(msg) -> None:
            callback(msg.data, msg.reply or None)

        self.subscribing.append(self.nc.subscribe(subject.decode(), cb=handler))

    def publish(self, subject: bytes, payload: bytes, reply: bytes = b"") -> bool:
        task = self.loop.create_task(self.publish_async(subject, payload, reply))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def publish_async(self, subject: bytes, payload: bytes, reply: bytes = b"") -> bool:
        await self.nc.publish(subject.decode(), payload, reply=reply.decode())
        return True

    async def flush(self, timeout: float = 2.0) -> bool:
        for subscribing in self.subscribing:
            await subscribing
        self.subscribing.clear()
        try:
            await self.nc.flush(timeout)
            return True
        except Exception:
            return False

    async def close(self) -> None:
        await self.nc.close()


async def role_sink(cfg: dict) -> None:
    """Subscriber of (a)/(b)/(c): counts records, acknowledges, says when it has them all."""
    loop = asyncio.get_running_loop()
    client = await connected(cfg, "bench-sink")
    batch = cfg["batch"]
    count = messages = errors = 0
    next_ack = ACK_EVERY
    target = -1
    t_first = 0.0
    finished = False
    last_progress = [0, loop.time()]

    def finish() -> None:
        nonlocal finished
        if not finished:
            finished = True
            say("done", count=count, messages=messages, errors=errors, t_first=t_first, t_done=time.monotonic())

    def on_message(payload: bytes, reply) -> None:
        nonlocal count, messages, next_ack, t_first
        if count == 0:
            t_first = time.monotonic()
        count += 1
        messages += 1
        if count >= next_ack:
            next_ack += ACK_EVERY
            client.publish(ACK, b"%d" % count)
        if count == target:
            finish()

    unpack = RECORD_HEAD.unpack_from

    def on_batch(payload: bytes, reply) -> None:
        nonlocal count, messages, next_ack, t_first, errors
        if count == 0:
            t_first = time.monotonic()
        view = memoryview(payload)
        end = len(payload)
        offset = n = 0
        tag, body = TAG, view[0:0]
        while offset < end:
            tag, size = unpack(payload, offset)
            offset += 5
            body = view[offset : offset + size]  # the record, as the gateway would take it
            offset += size
            n += 1
        if offset != end or tag != TAG or not body:
            errors += 1
        count += n
        messages += 1
        if count >= next_ack:
            next_ack = count - count % ACK_EVERY + ACK_EVERY
            client.publish(ACK, b"%d" % count)
        if count == target:
            finish()

    def on_end(payload: bytes, reply) -> None:
        nonlocal target
        target = int(payload)
        if count == target:
            finish()

    callback = on_batch if batch else on_message
    if cfg["mode"] == "client":
        for cid in client_ids(cfg["clients"]):
            client.subscribe(f"wsa.c.{cid}".encode(), callback)
    else:
        client.subscribe(b"wsa.w.X", callback)
    client.subscribe(END, on_end)
    if not await client.flush(10.0):
        raise SystemExit("sink: the nats-server did not confirm the subscriptions")

    async def watchdog() -> None:
        # Once the end is announced, give up if nothing more arrives for 5 s (something was lost).
        while not finished:
            await asyncio.sleep(0.5)
            if count != last_progress[0]:
                last_progress[:] = [count, loop.time()]
            elif target >= 0 and loop.time() - last_progress[1] > 5.0:
                finish()

    guard = loop.create_task(watchdog())
    say("ready")
    await stdin_line()  # "quit", or EOF
    guard.cancel()
    await client.close()


async def role_source(cfg: dict) -> None:
    """Publisher of (a)/(b)/(c): sends for ``duration`` s within the acknowledgement window."""
    client = await connected(cfg, "bench-source")
    acked = 0
    more = asyncio.Event()

    def on_ack(payload: bytes, reply) -> None:
        nonlocal acked
        acked = int(payload)
        more.set()

    client.subscribe(ACK, on_ack)
    await client.flush(10.0)
    batch = cfg["batch"]
    ids = client_ids(cfg["clients"])
    if batch:
        records = [record(i, ids[i % len(ids)]) for i in range(1024)]  # 1024 % batch == 0
        sends = [(b"wsa.w.X", None, records[o : o + batch]) for o in range(0, 1024, batch)]
        per_send = batch
    else:
        subject = (lambda cid: b"wsa.c." + cid.encode()) if cfg["mode"] == "client" else (lambda cid: b"wsa.w.X")
        sends = [(subject(cid), wsa_message(i, cid), None) for i, cid in enumerate(ids)]
        per_send = 1
    per_chunk = max(1, CHUNK // per_send)
    chunks = [sends[o : o + per_chunk] for o in range(0, len(sends), per_chunk)]
    say("ready")
    if await stdin_line() != "go":
        return
    publish = client.publish
    # nats-py's publish is a coroutine, awaited per message as its users do.
    publish_async = client.publish_async if cfg.get("client") == "nats-py" else None
    join = b"".join
    sent = failures = waits = 0
    t_start = time.monotonic()
    deadline = t_start + cfg["duration"]
    c = 0
    while True:
        if publish_async is not None:
            for subject, _, parts in chunks[c]:
                await publish_async(subject, join(parts), REPLY)
        elif batch:
            for subject, _, parts in chunks[c]:
                if not publish(subject, join(parts), REPLY):
                    failures += 1
        else:
            for subject, payload, _ in chunks[c]:
                if not publish(subject, payload, REPLY):
                    failures += 1
        sent += len(chunks[c]) * per_send
        c = (c + 1) % len(chunks)
        if time.monotonic() >= deadline:
            break
        if sent - acked > WINDOW:
            waits += 1
            while sent - acked > WINDOW:
                more.clear()
                await more.wait()
        else:
            await asyncio.sleep(0)
    t_sent = time.monotonic()
    client.publish(END, b"%d" % sent)
    flushed = await client.flush(30.0)
    say("done", sent=sent, failures=failures, t_start=t_start, t_sent=t_sent, window_waits=waits, flushed=flushed)
    await stdin_line()
    await client.close()


async def role_responder(cfg: dict) -> None:
    """(d): the directory: answers each lookup at once."""
    client = await connected(cfg, "bench-directory")
    answer = b'{"worker":"w7","since":1716200000123}'

    def on_lookup(payload: bytes, reply) -> None:
        client.publish(reply, answer)

    client.subscribe(LOOKUP, on_lookup)
    await client.flush(10.0)
    say("ready")
    await stdin_line()
    await client.close()


async def role_requester(cfg: dict) -> None:
    """(d): one lookup at a time, timed from publish to answer."""
    loop = asyncio.get_running_loop()
    client = await connected(cfg, "bench-requester")
    waiter = None

    def on_answer(payload: bytes, reply) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(payload)

    client.subscribe(INBOX, on_answer)
    await client.flush(10.0)
    keys = [b'{"id":"%s"}' % cid.encode() for cid in client_ids(1000)]
    say("ready")
    if await stdin_line() != "go":
        return
    rtts, timeouts = [], 0
    now = time.perf_counter_ns
    for i in range(WARMUP_LOOKUPS + cfg["lookups"]):
        waiter = loop.create_future()
        t0 = now()
        client.publish(LOOKUP, keys[i % 1000], INBOX)
        try:
            await asyncio.wait_for(waiter, 2.0)
        except asyncio.TimeoutError:
            timeouts += 1
            continue
        if i >= WARMUP_LOOKUPS:
            rtts.append(now() - t0)
    say("done", rtts=rtts, timeouts=timeouts, total=WARMUP_LOOKUPS + cfg["lookups"])
    await stdin_line()
    await client.close()


async def role_presence_recv(cfg: dict) -> None:
    """(e): another worker: reads each announcement, notes its one-way delay, acknowledges."""
    import orjson

    client = await connected(cfg, "bench-presence-recv")
    total = cfg["announcements"] + cfg["warmup"]
    delays = []

    def on_presence(payload: bytes, reply) -> None:
        arrived = time.monotonic_ns()
        message = orjson.loads(payload)
        if message["v"] > cfg["warmup"]:
            delays.append(arrived - message["t"])
        client.publish(PRESENCE_ACK, b"%d" % message["v"])
        if message["v"] == total:
            say("done", delays=delays)

    client.subscribe(PRESENCE, on_presence)
    await client.flush(10.0)
    say("ready")
    await stdin_line()
    await client.close()


async def role_presence_send(cfg: dict) -> None:
    """(e): a worker announcing one login per announcement, one at a time."""
    import orjson

    loop = asyncio.get_running_loop()
    client = await connected(cfg, "bench-presence-send")
    waiter = None

    def on_ack(payload: bytes, reply) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    client.subscribe(PRESENCE_ACK, on_ack)
    await client.flush(10.0)
    ids = client_ids(1000)
    say("ready")
    if await stdin_line() != "go":
        return
    timeouts = 0
    total = cfg["announcements"] + cfg["warmup"]
    for v in range(1, total + 1):
        waiter = loop.create_future()
        message = {
            "k": "up",
            "v": v,
            "join": [[ids[v % 1000], time.time_ns() // 1000]],
            "leave": [],
            "w": "w1",
            "t": time.monotonic_ns(),
        }
        client.publish(PRESENCE, orjson.dumps(message))
        try:
            await asyncio.wait_for(waiter, 2.0)
        except asyncio.TimeoutError:
            timeouts += 1
    say("done", timeouts=timeouts, total=total)
    await stdin_line()
    await client.close()


ROLES = {
    "sink": role_sink,
    "source": role_source,
    "responder": role_responder,
    "requester": role_requester,
    "presence_recv": role_presence_recv,
    "presence_send": role_presence_send,
}


def child_main(role: str, cfg_json: str) -> None:
    import uvloop

    uvloop.run(ROLES[role](json.loads(cfg_json)))


# ---------------------------------------------------------------- the runner


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system time of a process."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


class Child:
    """A role in its own process; talks JSON lines on stdout, takes words on stdin."""

    def __init__(self, role: str, cfg: dict) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", role, json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        self.pid = self.proc.pid
        self.buffer = b""

    def read(self, kind: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                message = json.loads(line)
                if message["kind"] == kind:
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.role}: no {kind!r} within {timeout:.0f}s")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"{self.role} exited (status {self.proc.wait()}) before {kind!r}")
                self.buffer += chunk

    def send(self, word: str) -> None:
        try:
            self.proc.stdin.write(word.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def stop(self) -> None:
        self.send("quit")
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def slow_consumers(nats) -> int:
    try:
        return nats.log_file.read_text(errors="replace").count("Slow Consumer")
    except OSError:
        return 0


def pair(nats, first: tuple, second: tuple, timeout: float):
    """Start ``first`` (the receiving side), then ``second``; go; return both "done"s and the CPU used."""
    a = Child(*first)
    b = None
    try:
        a.read("ready", 30)
        b = Child(*second)
        b.read("ready", 30)
        pids = (b.pid, a.pid, nats.proc.pid)
        before = [cpu_seconds(p) for p in pids]
        b.send("go")
        if first[0] == "sink":
            done_a = a.read("done", timeout)
            after = [cpu_seconds(p) for p in pids]
            done_b = b.read("done", 30)
        else:
            done_b = b.read("done", timeout)
            done_a = a.read("done", 10) if first[0] == "presence_recv" else None
            after = [cpu_seconds(p) for p in pids]
        return done_b, done_a, [y - x for x, y in zip(before, after)]
    finally:
        for child in (b, a):
            if child is not None:
                child.stop()


def us(seconds: float, n: int) -> float:
    return seconds * 1e6 / n if n else float("nan")


def throughput(nats, args, label: str, mode: str, batch: int, client: str = "wsa-fast") -> dict:
    cfg = dict(url=nats.url, mode=mode, batch=batch, clients=args.clients, duration=args.duration, client=client)
    log(f"  {label} ...")
    slow_before = slow_consumers(nats)
    sent, got, cpu = pair(nats, ("sink", cfg), ("source", cfg), args.duration + 60)
    slow = slow_consumers(nats) - slow_before
    n = got["count"]
    ok = n == sent["sent"] and not got["errors"] and not sent["failures"] and not slow
    elapsed = got["t_done"] - sent["t_start"]
    notes = [f"delivered {n:,} {'=' if n == sent['sent'] else '!='} sent {sent['sent']:,}"]
    if batch:
        notes.append(f"{got['messages']:,} NATS msgs")
    if got["errors"]:
        notes.append(f"{got['errors']} bad batches")
    if sent["failures"]:
        notes.append(f"{sent['failures']} publishes refused")
    if slow:
        notes.append(f"{slow} SLOW CONSUMER events")
    notes.append(f"total {us(sum(cpu), n):.2f} µs CPU/msg")
    notes.append("CPU s pub/sub/nats " + "/".join(f"{c:.2f}" for c in cpu))
    return dict(
        option=label,
        rate=n / elapsed if ok else float("nan"),
        cpu=[us(c, n) for c in cpu],
        notes="; ".join(notes),
        ok=ok,
        delivered=n,
        sent=sent["sent"],
        seconds=elapsed,
        cpu_seconds=cpu,
        window_waits=sent["window_waits"],
    )


def percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def lookups(nats, args) -> tuple[dict, dict]:
    log("  (d) request/reply lookup ...")
    cfg = dict(url=nats.url, lookups=args.lookups)
    done, _, cpu = pair(nats, ("responder", cfg), ("requester", cfg), 120)
    rtts = [ns / 1000 for ns in done["rtts"]]
    median, p99 = statistics.median(rtts), percentile(rtts, 0.99)
    total = done["total"]
    row = dict(
        option="(d) directory lookup per message (request/reply, as NATS KV get)",
        rate=1e6 / median,
        cpu=[us(c, total) for c in cpu],
        ok=not done["timeouts"],
        notes=f"round trip median {median:.0f} µs, p99 {p99:.0f} µs; a worker awaiting each lookup "
        f"tops out at {1e6 / median:,.0f} msg/s; {done['timeouts']} timeouts; "
        f"CPU per lookup; CPU s requester/responder/nats " + "/".join(f"{c:.2f}" for c in cpu),
    )
    stats = dict(
        what="(d) lookup round trip", n=len(rtts), median=median, p99=p99, max=max(rtts), mean=statistics.fmean(rtts)
    )
    return row, stats


def presence(nats, args) -> tuple[dict, dict]:
    log("  (e) presence propagation ...")
    cfg = dict(url=nats.url, announcements=args.announcements, warmup=100)
    done, got, cpu = pair(nats, ("presence_recv", cfg), ("presence_send", cfg), 120)
    delays = [ns / 1000 for ns in got["delays"]]
    median, p99 = statistics.median(delays), percentile(delays, 0.99)
    row = dict(
        option="(e) presence announcement, one worker to another",
        rate=float("nan"),
        cpu=[us(c, done["total"]) for c in cpu],
        ok=not done["timeouts"],
        notes=f"one-way median {median:.0f} µs, p99 {p99:.0f} µs (publish to parsed); sequential, "
        f"each acknowledged; CPU per announcement incl. the ack; CPU s sender/receiver/nats "
        + "/".join(f"{c:.2f}" for c in cpu),
    )
    stats = dict(
        what="(e) presence one-way",
        n=len(delays),
        median=median,
        p99=p99,
        max=max(delays),
        mean=statistics.fmean(delays),
    )
    return row, stats


def fmt_rate(rate: float) -> str:
    return "FAILED" if rate != rate else f"{rate:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of sending per throughput row")
    parser.add_argument("--clients", type=int, default=1000, help="client ids (subjects in (a))")
    parser.add_argument("--lookups", type=int, default=2000, help="timed lookups in (d)")
    parser.add_argument("--announcements", type=int, default=1000, help="timed announcements in (e)")
    parser.add_argument(
        "--only",
        metavar="PREFIX",
        action="append",
        help="only the throughput rows whose label starts so, e.g. '(c)' (repeatable)",
    )
    parser.add_argument("--child", nargs=2, metavar=("ROLE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return 0

    import uvloop

    from wsa_fast.embedded_nats import EmbeddedNats, nats_server_binary

    version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    command = "python bench/nats_options.py" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])
    started = time.monotonic()
    nats = EmbeddedNats(1048576)
    log(f"nats-server pid {nats.proc.pid} at {nats.url}")
    rows, stats = [], []
    try:
        for label, mode, batch, client in [
            (f"(a) per-client subjects ({args.clients:,} subscriptions)", "client", 0, "wsa-fast"),
            ("(b) per-worker subject, unbatched", "worker", 0, "wsa-fast"),
            ("(c) per-worker subject, batched x64", "worker", 64, "wsa-fast"),
            ("(c) per-worker subject, batched x512", "worker", 512, "wsa-fast"),
            ("(f) nats-py: per-worker subject, batched x64", "worker", 64, "nats-py"),
        ]:
            if args.only and not any(label.startswith(prefix) for prefix in args.only):
                continue
            try:
                rows.append(throughput(nats, args, label, mode, batch, client))
            except RuntimeError as error:
                rows.append(dict(option=label, rate=float("nan"), cpu=[float("nan")] * 3, notes=str(error), ok=False))
        for measure in (lookups, presence):
            if args.only:
                continue
            try:
                row, stat = measure(nats, args)
                rows.append(row)
                stats.append(stat)
            except RuntimeError as error:
                rows.append(
                    dict(option=measure.__name__, rate=float("nan"), cpu=[float("nan")] * 3, notes=str(error), ok=False)
                )
    finally:
        nats.stop()

    print(
        f"machine: {platform.node()}, {os.cpu_count()} CPUs ({platform.machine()}, {platform.system()} "
        f"{platform.release()}); Python {platform.python_version()}, uvloop {uvloop.__version__}, {version}"
    )
    print(f"command: {command}    ({time.monotonic() - started:.0f} s; nothing pinned, ~100-byte messages)")
    print()
    print("| option | messages/s | publisher µs CPU/msg | subscriber µs CPU/msg | nats-server µs CPU/msg | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        rate = "—" if row["option"].startswith("(e)") and row["ok"] else fmt_rate(row["rate"])
        cpu = " | ".join("—" if c != c else f"{c:.2f}" for c in row["cpu"])
        print(f"| {row['option']} | {rate} | {cpu} | {row['notes']} |")
    if stats:
        print()
        print("| latency | n | median µs | p99 µs | max µs | mean µs |")
        print("|---|---:|---:|---:|---:|---:|")
        for s in stats:
            print(
                f"| {s['what']} | {s['n']:,} | {s['median']:.0f} | {s['p99']:.0f} | {s['max']:.0f} | {s['mean']:.0f} |"
            )
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
