"""The fairness scenario: one client floods while 100 well-behaved clients ping.

    python bench/fairness.py --url ws://127.0.0.1:PORT/ --server-pid PID [--duration 10]

The calm clients, logged in and receiving every broadcast, each send a ping every 20 ms and
time its answer: alone for half the duration (the baseline), then while the flooder (a
separate process) sends pings as fast as the gateway reads them for half the duration, then
100 KB broadcasts, reconnecting whenever it is closed. Prints one JSON object: the calm
clients' latency percentiles per phase, how many were disconnected, what the flooder got
(answers, RATE_LIMITED, closes) and the server's peak RSS (VmHWM).
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

    def on_ws_connected(self, transport):
        self.transport = transport

    def on_ws_frame(self, transport, frame):
        if frame.msg_type != WSMsgType.TEXT:
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
        if frame.msg_type == WSMsgType.TEXT:
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


async def calm_clients(url: str, server_pid: int, duration: float) -> dict:
    samples: list[tuple[float, float]] = []
    clients = []
    for i in range(CALM_CLIENTS):
        _, listener = await ws_connect(lambda i=i: Calm(f"calm{i}", samples), url)
        listener.transport.send(WSMsgType.TEXT, login_text(f"calm{i}"))
        clients.append(listener)
    await asyncio.gather(*(c.logged_in for c in clients))
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

    async def pinger(client: Calm) -> None:
        await asyncio.sleep(random.random() * PING_EVERY)
        n = 0
        while not starting.done() or flooder.is_alive():
            client.ping(n)
            n += 1
            await asyncio.sleep(PING_EVERY)

    await asyncio.gather(*(pinger(c) for c in clients))
    flooder.join()
    counts = receive.recv() if receive.poll(5) else {}
    flood_at, half = started + baseline, started + baseline + duration / 2
    result = {"ok": True, "disconnected": sum(c.disconnected for c in clients)}
    flooded = [s for s in samples if s[0] >= flood_at]
    for phase, chosen in (
        ("", flooded),
        ("baseline_", [s for s in samples if s[0] < flood_at]),
        ("requests_", [s for s in flooded if s[0] < half]),
        ("broadcasts_", [s for s in flooded if s[0] >= half]),
    ):
        rtts = sorted(rtt for _, rtt in chosen)
        result.update(
            {
                f"{phase}pings": len(rtts),
                f"{phase}p50_us": percentile(rtts, 50),
                f"{phase}p99_us": percentile(rtts, 99),
                f"{phase}p999_us": percentile(rtts, 99.9),
                f"{phase}max_us": rtts[-1] * 1e6 if rtts else None,
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
    args = p.parse_args(argv)
    print(json.dumps(uvloop.run(calm_clients(args.url, args.server_pid, args.duration))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
