"""The fairness scenario: one client floods while 100 well-behaved clients ping.

    python bench/fairness.py --url ws://127.0.0.1:PORT/ --server-pid PID [--duration 10]

The calm clients each send a ping every 20 ms and time its answer: alone for half the
duration (the baseline), then while the flooder (a separate process) sends pings as fast as
the gateway reads them for half the duration, then 100 KB broadcasts, reconnecting as soon as
it is closed. Prints one JSON object: the calm clients' latency percentiles per phase, how
many clients were disconnected, how many broadcasts reached the receivers, what the flooder
got (answers, RATE_LIMITED, closes), the server's peak RSS (VmHWM), and how late the calm
clients' own event loop ran (``loop_lag``): they share one process, and a ping answer waits
while that process is busy or not scheduled, so a lag as large as the latency says the time
went to the measuring side, not the gateway. With ``--server-lag FILE`` (the gateway serving
bench/loop_lag_app.py) it also reports how late the gateway's own loop ran (``server_loop_lag``)
and the CPU it used between two wakes of that probe (``server_loop_cpu``): the gateway's stalls,
measured where they happen, and how much of each was its own work rather than other programs'.

Who receives the broadcasts: 100 more clients, logged in, in a process of their own, which
read every broadcast as fast as they can. The calm clients are anonymous (a ping needs no
login) and receive none: on a 2-core machine the clients share one core, and 100 calm clients
that also read 100 KB x 100 per broadcast in their one process spend 4-6 ms doing so each time,
during which no answer is read, so their latency measured that process, not the gateway.
``--calm-receive`` restores that layout (the calm clients log in and receive, no receivers).
bench/run.py runs it as scenario ``fairness`` against a gateway with its default limits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import time

import uvloop
from picows import WSListener, WSMsgType, ws_connect

CALM_CLIENTS = 100
PING_EVERY = 0.02
BROADCAST_SIZE = 100_000
# A frame this large is a broadcast: counted without copying it (100 clients receive 10 MB each time).
BROADCAST_MIN = 4096
# How often the loop-lag probe wakes.
LAG_PROBE = 0.001
# The flooder keeps at most this much unsent, like a client that writes as fast as TCP lets it.
FLOOD_BACKLOG = 4 << 20
FLOOD_BURST = 200


def ping_text(client_id: str, msg_id: str) -> bytes:
    return (
        f'{{"from":"{client_id}","to":"server","type":"request","id":"{msg_id}","payload":{{"method":"wsa@v1/ping"}}}}'
    ).encode()


def login_text(client_id: str) -> bytes:
    return (
        f'{{"from":"{client_id}","to":"server","type":"request","id":"login","payload":{{"method":"auth@v1/login"}}}}'
    ).encode()


class Calm(WSListener):
    """A well-behaved client: one ping at a time, every PING_EVERY seconds."""

    def __init__(self, client_id: str, samples: list[tuple[float, float]]):
        self.client_id = client_id
        self.samples = samples
        self.sent_at = 0.0
        self.logged_in = asyncio.get_running_loop().create_future()
        self.disconnected = False
        self.measuring = False
        self.transport = None
        self.broadcasts = 0

    def on_ws_connected(self, transport):
        self.transport = transport

    def on_ws_frame(self, transport, frame):
        if frame.msg_type != WSMsgType.TEXT:
            return
        if frame.payload_size >= BROADCAST_MIN:
            self.broadcasts += 1
            return
        payload = frame.get_payload_as_bytes()
        if b'"id":"login"' in payload and not self.logged_in.done():
            self.logged_in.set_result(None)
        elif b'"type":"response"' in payload and self.sent_at:
            if self.measuring:
                self.samples.append((self.sent_at, time.perf_counter() - self.sent_at))
            self.sent_at = 0.0

    def on_ws_disconnected(self, transport):
        self.disconnected = True

    def ping(self, n: int) -> None:
        if not self.disconnected and not self.sent_at:
            self.sent_at = time.perf_counter()
            self.transport.send(WSMsgType.TEXT, ping_text(self.client_id, f"{n % 100000:05d}"))


class Flooder(WSListener):
    def __init__(self, counts: dict):
        self.counts = counts
        self.closed = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.CLOSE:
            # Closed (1008, rate limit): drop this connection and come back at once with a new one.
            transport.disconnect()
        elif frame.msg_type == WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()
            self.counts["refused" if b"RATE_LIMITED" in payload else "answered"] += 1

    def on_ws_disconnected(self, transport):
        if not self.closed.done():
            self.closed.set_result(None)


async def flood(url: str, duration: float) -> dict:
    counts = {"answered": 0, "refused": 0, "closed": 0, "sent": 0}
    blob = "f" * BROADCAST_SIZE
    broadcast = (
        f'{{"from":"flood","to":"client","type":"event","id":"bcast",'
        f'"payload":{{"method":"app@v1/big","params":{{"blob":"{blob}"}}}}}}'
    ).encode()
    start = time.monotonic()
    while time.monotonic() - start < duration:
        transport, listener = await ws_connect(lambda: Flooder(counts), url)
        transport.send(WSMsgType.TEXT, login_text("flood"))
        n = 0
        while not listener.closed.done() and time.monotonic() - start < duration:
            if transport.underlying_transport.get_write_buffer_size() > FLOOD_BACKLOG:
                await asyncio.sleep(0.001)
                continue
            requests_phase = time.monotonic() - start < duration / 2
            for _ in range(FLOOD_BURST if requests_phase else 1):
                transport.send(WSMsgType.TEXT, ping_text("flood", f"{n % 100000:05d}") if requests_phase else broadcast)
                n += 1
            counts["sent"] += FLOOD_BURST if requests_phase else 1
            await asyncio.sleep(0)
        if listener.closed.done():
            counts["closed"] += 1
        else:
            transport.disconnect()
    return counts


def flood_process(url: str, duration: float, out) -> None:
    # It shares a core with the calm clients: they measure, so they come first.
    os.nice(10)
    out.send(uvloop.run(flood(url, duration)))


def percentile(sorted_samples: list[float], p: float) -> float | None:
    if not sorted_samples:
        return None
    return sorted_samples[min(len(sorted_samples) - 1, int(p / 100 * len(sorted_samples)))] * 1e6


def peak_rss_kib(pid: int) -> int:
    # The kernel's high-water mark: psutil has no peak RSS on Linux, and sampling would miss the peak.
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


async def connect_clients(url: str, prefix: str, samples: list[tuple[float, float]], login: bool) -> list[Calm]:
    clients = []
    for i in range(CALM_CLIENTS):
        _, listener = await ws_connect(lambda i=i: Calm(f"{prefix}{i}", samples), url)
        if login:
            listener.transport.send(WSMsgType.TEXT, login_text(f"{prefix}{i}"))
        else:
            listener.logged_in.set_result(None)
        clients.append(listener)
    await asyncio.gather(*(c.logged_in for c in clients))
    return clients


async def receive_broadcasts(url: str, seconds: float, ready, out) -> None:
    """The receivers: logged in, reading every broadcast, for ``seconds`` after they are ready."""
    clients = await connect_clients(url, "recv", [], True)
    ready.send(True)
    await asyncio.sleep(seconds)
    out.send({"received": min(c.broadcasts for c in clients), "disconnected": sum(c.disconnected for c in clients)})
    for c in clients:
        if not c.disconnected:
            c.transport.disconnect()


def receivers_process(url: str, seconds: float, ready, out) -> None:
    uvloop.run(receive_broadcasts(url, seconds, ready, out))


def read_server_lags(path: str | None) -> list[tuple[float, float, float]]:
    """The gateway's own loop lag (bench/loop_lag_app.py): (perf_counter, seconds late, CPU seconds used) per probe."""
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [tuple(map(float, line.split())) for line in f if line.endswith("\n")]


async def calm_clients(url: str, server_pid: int, duration: float, calm_receive: bool, server_lag: str | None) -> dict:
    samples: list[tuple[float, float]] = []
    receivers = None
    if not calm_receive:
        ready, ready_in = multiprocessing.Pipe(duplex=False)
        report, report_in = multiprocessing.Pipe(duplex=False)
        # Until the flood is over: the baseline (duration / 2), then the flood (duration), and a margin.
        receivers = multiprocessing.Process(
            target=receivers_process, args=(url, duration * 1.5 + 2, ready_in, report_in)
        )
        receivers.start()
        await asyncio.get_running_loop().run_in_executor(None, ready.recv)
    clients = await connect_clients(url, "calm", samples, calm_receive)
    rss_before = peak_rss_kib(server_pid)
    receive, send = multiprocessing.Pipe(duplex=False)
    flooder = multiprocessing.Process(target=flood_process, args=(url, duration, send))
    for c in clients:
        c.measuring = True
    started = time.perf_counter()
    baseline = duration / 2  # the calm clients alone first, as long as each flood phase

    async def start_flood() -> None:
        await asyncio.sleep(baseline)
        flooder.start()

    starting = asyncio.create_task(start_flood())
    lags: list[tuple[float, float]] = []

    async def lag_probe() -> None:
        # How late this process's loop wakes a 1 ms sleep: time no ping answer could be read in.
        while not starting.done() or flooder.is_alive():
            slept_at = time.perf_counter()
            await asyncio.sleep(LAG_PROBE)
            lags.append((slept_at, time.perf_counter() - slept_at - LAG_PROBE))

    probing = asyncio.create_task(lag_probe())

    async def pinger(client: Calm) -> None:
        await asyncio.sleep(random.random() * PING_EVERY)
        n = 0
        while not starting.done() or flooder.is_alive():
            client.ping(n)
            n += 1
            await asyncio.sleep(PING_EVERY)

    await asyncio.gather(*(pinger(c) for c in clients))
    await probing
    flooder.join()
    counts = receive.recv() if receive.poll(5) else {}
    received = {"received": min(c.broadcasts for c in clients), "disconnected": 0}
    if receivers is not None:
        received = await asyncio.get_running_loop().run_in_executor(None, report.recv)
        receivers.join()
    server_lags = read_server_lags(server_lag)
    flood_at, half = started + baseline, started + baseline + duration / 2
    result = {
        "ok": True,
        "disconnected": sum(c.disconnected for c in clients) + received["disconnected"],
        # Every receiver receives every broadcast: the fewest any of them got.
        "broadcasts_received": received["received"],
        "calm_receive": calm_receive,
    }
    for phase, start, end in (
        ("", flood_at, float("inf")),
        ("baseline_", 0.0, flood_at),
        ("requests_", flood_at, half),
        ("broadcasts_", half, float("inf")),
    ):
        rtts = sorted(rtt for sent, rtt in samples if start <= sent < end)
        lag = sorted(late for at, late in lags if start <= at < end)
        in_phase = [(late, cpu) for at, late, cpu in server_lags if max(start, started) <= at < end]
        gateway_lag = sorted(late for late, _ in in_phase)
        gateway_busy = sorted(cpu for _, cpu in in_phase)
        result.update(
            {
                f"{phase}pings": len(rtts),
                f"{phase}p50_us": percentile(rtts, 50),
                f"{phase}p99_us": percentile(rtts, 99),
                f"{phase}p999_us": percentile(rtts, 99.9),
                f"{phase}max_us": rtts[-1] * 1e6 if rtts else None,
                f"{phase}loop_lag_p99_us": percentile(lag, 99),
                f"{phase}loop_lag_max_us": lag[-1] * 1e6 if lag else None,
                f"{phase}server_loop_lag_p99_us": percentile(gateway_lag, 99),
                f"{phase}server_loop_lag_max_us": gateway_lag[-1] * 1e6 if gateway_lag else None,
                f"{phase}server_loop_cpu_p99_us": percentile(gateway_busy, 99),
                f"{phase}server_loop_cpu_max_us": gateway_busy[-1] * 1e6 if gateway_busy else None,
            }
        )
    result.update(
        {
            "flooder": counts,
            "server_peak_rss_kib": peak_rss_kib(server_pid),
            "server_rss_before_kib": rss_before,
        }
    )
    for c in clients:
        if not c.disconnected:
            c.transport.disconnect()
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument(
        "--calm-receive", action="store_true", help="the calm clients log in and receive the broadcasts themselves"
    )
    p.add_argument(
        "--server-lag", help="the file the gateway's loop-lag probe writes (bench/loop_lag_app.py), to report per phase"
    )
    args = p.parse_args(argv)
    print(
        json.dumps(
            uvloop.run(calm_clients(args.url, args.server_pid, args.duration, args.calm_receive, args.server_lag))
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
