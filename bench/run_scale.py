"""Scale: idle logged-in connections up to the file descriptor limit, and what they cost.

    python bench/run_scale.py --workers 1 --idle 18980              # one worker at its limit (ulimit -n 20000)
    python bench/run_scale.py --workers 6 --idle 100000 --clients 8  # one node
    python bench/run_scale.py --workers 2 --idle 10000              # connect + login rate, two workers
    python bench/run_scale.py --probe --pause-holders               # what stalls the loop in the latency window
    python bench/run_scale.py --perf-sched /tmp/w.data              # its context switches and stacks (perf)

One ``wsa-fast serve`` (nice -n 10, --limits off, no connection limits but the descriptor budget)
and, in this order: ping cost and latency with no idle connections; ``--idle`` connections
opened and logged in by ``--clients`` load processes (``wsa-fast bench --scenario connect``), each
from its own loopback address (127.0.0.2, ...: a source address has about 28,000 ephemeral
ports); the same ping measurements beside them. Prints one JSON object: the connect + login
rate (connections per second, until the server's gauge counts them all), the node's RSS
(every process of the server) before and with the idle connections, ping server CPU per
message (closed loop, 8 connections) and ping latency percentiles (open loop) without and with,
and the CPU the server, the holders of the idle connections and the machine used in each latency window.
Everything it starts is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from wsa_fast.loadtest import proctree  # noqa: E402
from wsa_fast.loadtest.driver import IDLE_SETTLE_S  # noqa: E402

WSA_FAST = os.path.join(os.path.dirname(sys.executable), "wsa-fast")
NICE = ["nice", "-n", "10"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_connections(port: int) -> int:
    """The node's gauge of open WebSockets (every worker's), scraped from /metrics on the public port."""
    for _attempt in range(5):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
                text = answer.read().decode()
            break
        except OSError as error:  # a scrape that lands in a full accept queue is reset: ask again
            print(f"scrape failed ({error}), again", file=sys.stderr)
            time.sleep(1.0)
    else:
        raise SystemExit("the server's /metrics did not answer")
    return sum(int(float(line.split()[-1])) for line in text.splitlines() if line.startswith("wsa_connections{"))


def bench(url: str, *args: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        run = subprocess.run(
            [*NICE, WSA_FAST, "bench", url, "--quiet", "--json", out.name, *args],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
        )
        if not os.path.getsize(out.name):
            raise SystemExit(f"wsa-fast bench {' '.join(args)} failed: {run.stderr.strip()}")
        with open(out.name) as f:
            return json.load(f)


def run_delay_s(pids: set[int]) -> float:
    """Seconds the threads of these processes have waited for a core while runnable (/proc/PID/task/*/schedstat)."""
    total = 0
    for pid in pids:
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[1])
        except OSError:
            pass  # gone meanwhile
    return total / 1e9


def latency_window(
    url: str, server_pid: int, loads: list[subprocess.Popen], probe: str | None, perf_data: str | None = None
) -> dict:
    """Open-loop ping at 2,000/s for 5 s: its percentiles (us), the CPU each party used meanwhile (the
    server, the holders of the idle connections, the whole machine), and with ``probe`` what stalled
    the server's loops then (bench/loop_lag_app.py's files)."""
    scan, (cpus, idle), started = proctree.scan(), proctree.idle_seconds(), time.perf_counter()
    server = proctree.tree(scan, server_pid)
    waited = run_delay_s(server)
    # With perf_data, every context switch of the machine meanwhile (`perf sched timehist -i perf_data`), and
    # the server's stacks 2,000 times a second of its CPU (`perf script -i perf_data.cpu`).
    perf = []
    if perf_data:
        perf.append(["perf", "sched", "record", "-o", perf_data, "--", "sleep", "6"])
        pids = ",".join(map(str, sorted(server)))
        perf.append(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g", "-p", pids, "-o", perf_data + ".cpu"])
        perf[-1] += ["--", "sleep", "6"]
    recorders = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for cmd in perf]
    opened = bench(url, "--scenario", "ping", "--clients", "4", "--rate", "2000", "--spin", "--duration", "5")
    for recorder in recorders:
        recorder.wait()
    ended, after, (_, idle_after) = time.perf_counter(), proctree.scan(), proctree.idle_seconds()
    waited = run_delay_s(server) - waited
    holders = set().union(*(proctree.tree(after, p.pid) for p in loads))
    lat = opened["summary"]["latency_ns"]
    out = {
        "latency_us_at_2000_per_s": {k: round(v / 1e3, 1) for k, v in lat.items()},
        "ok": opened["ok"],
        "seconds": round(ended - started, 2),
        "cpu_s": {
            "server": round(proctree.cpu_of(after, server) - proctree.cpu_of(scan, server), 2),
            "holders": round(proctree.cpu_of(after, holders) - proctree.cpu_of(scan, holders), 2),
            "machine": round(cpus * (ended - started) - (idle_after - idle), 2),
        },
        "server_waited_for_a_core_s": round(waited, 3),
        "pids": {"server": sorted(server), "holders": sorted(holders)},
    }
    if probe:
        out["server_loops"] = probe_summary(probe, started, ended)
    return out


def probe_summary(probe: str, start: float, end: float) -> dict:
    """Each worker's loop between start and end: how late its 1 ms probe woke (p99, max), the most CPU it
    spent between two wakes, the share of the time spent in gaps over 2.5 ms that it did not use (waiting
    for a core), and its garbage collections (generation: count, most CPU ms)."""
    workers = {}
    for name in sorted(os.listdir(probe)):
        path = os.path.join(probe, name)
        if name.endswith(".gc"):
            continue
        with open(path) as f:
            rows = [tuple(map(float, line.split())) for line in f if line.endswith("\n")]
        rows = [r for r in rows if start <= r[0] <= end]
        if not rows:
            continue
        lags = sorted(r[1] for r in rows)
        cpus = sorted(r[2] for r in rows)
        waited = sum(r[1] - r[2] for r in rows if r[1] > 0.0025)
        collections: dict[str, list] = {}
        with open(path + ".gc") as f:
            for line in f:
                at, gen, _wall, cpu, _n = line.split()
                if start <= float(at) <= end:
                    seen = collections.setdefault(gen, [0, 0.0])
                    seen[0] += 1
                    seen[1] = max(seen[1], round(float(cpu) * 1e3, 2))
        workers[name] = {
            "lag_p99_ms": round(lags[int(len(lags) * 0.99)] * 1e3, 2),
            "lag_max_ms": round(lags[-1] * 1e3, 2),
            "cpu_between_wakes_ms": {
                "p99": round(cpus[int(len(cpus) * 0.99)] * 1e3, 3),
                "p99.9": round(cpus[int(len(cpus) * 0.999)] * 1e3, 3),
                "max": round(cpus[-1] * 1e3, 3),
            },
            "wakes": len(rows),
            "wakes_with_over_250us_cpu": sum(1 for r in rows if r[2] > 0.00025),
            "share_waiting_for_a_core": round(waited / (end - start), 3),
            "collections": collections,
        }
    return workers


def ping_figures(
    url: str, server_pid: int, loads: list[subprocess.Popen], probe: str | None, perf_data: str | None = None
) -> dict:
    closed = bench(
        url,
        "--scenario",
        "ping",
        "--clients",
        "8",
        "--window",
        "64",
        "--duration",
        "5",
        "--server-pid",
        str(server_pid),
    )
    opened = latency_window(url, server_pid, loads, probe, perf_data)
    return {
        "ping_us_cpu_per_msg": closed["server"]["cpu_us_per_msg"],
        "ping_msg_per_s": closed["summary"]["throughput"],
        "latency_us_at_2000_per_s": opened.pop("latency_us_at_2000_per_s"),
        "ping_ok": closed["ok"] and opened.pop("ok"),
        "latency_window": opened,
    }


def holders_paused(url: str, server_pid: int, loads: list[subprocess.Popen], probe: str | None) -> dict:
    """The latency window with the holders stopped (SIGSTOP): their connections stay open and the server
    still sends their keepalive pings, but no holder takes a core to answer them. The window is shorter
    than ping_timeout (10 s), so no connection is closed for a pong that comes late."""
    for p in loads:
        os.killpg(p.pid, signal.SIGSTOP)
    try:
        return latency_window(url, server_pid, loads, probe)
    finally:
        for p in loads:
            os.killpg(p.pid, signal.SIGCONT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=1)
    # A worker limited to 20,000 descriptors takes 19,000 connections: the ping clients need 12 of them.
    ap.add_argument("--idle", type=int, default=18980, help="idle logged-in connections to open")
    ap.add_argument("--clients", type=int, default=2, help="load processes opening them, one source address each")
    ap.add_argument("--window", type=int, default=64, help="handshakes in flight per load process")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for every connection to log in")
    ap.add_argument(
        "--probe", action="store_true", help="serve bench/loop_lag_app.py and report each worker's loop stalls"
    )
    ap.add_argument("--perf-sched", metavar="FILE", help="perf sched record the window with idle connections")
    ap.add_argument(
        "--pause-holders",
        action="store_true",
        help="then the latency window again with the holders stopped, and once more with them running",
    )
    args = ap.parse_args()

    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    # The server's log goes to a file: a pipe nobody reads fills up and stalls the workers' writes.
    log = tempfile.NamedTemporaryFile("w+", prefix="wsa-scale-", suffix=".log")
    probe = tempfile.mkdtemp(prefix="wsa-scale-probe-") if args.probe else None
    app = ["--app", "bench.loop_lag_app:app"] if probe else []
    env = dict(os.environ, WSA_BENCH_LOOP_LAG=os.path.join(probe, "{pid}")) if probe else None
    server = subprocess.Popen(
        [
            *NICE,
            WSA_FAST,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--limits",
            "off",
            "--max-connections",
            "0",
            "--max-connections-per-ip",
            "0",
            *app,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=os.path.dirname(HERE),
        env=env,
    )
    loads: list[subprocess.Popen] = []
    try:
        while "listening on" not in open(log.name).read():
            if server.poll() is not None:
                raise SystemExit("the server did not start:\n" + open(log.name).read())
            time.sleep(0.2)
        result: dict = {"workers": args.workers, "idle_target": args.idle, "load_processes": args.clients}
        result["rss_before_bytes"] = proctree.rss_bytes(server.pid)
        if probe:  # the probe starts at a worker's first login: one each, the same on every window
            bench(url, "--scenario", "connect", "--clients", str(4 * args.workers), "--duration", "0.5")
        result["without_idle"] = ping_figures(url, server.pid, [], probe)
        per = -(-args.idle // args.clients)
        t0 = time.monotonic()
        for k in range(args.clients):
            count = min(per, args.idle - k * per)
            loads.append(
                subprocess.Popen(
                    [
                        *NICE,
                        WSA_FAST,
                        "bench",
                        url,
                        "--scenario",
                        "connect",
                        "--clients",
                        str(count),
                        "--window",
                        str(args.window),
                        "--duration",
                        "3600",
                        "--quiet",
                        "--source-address",
                        f"127.0.0.{k + 2}",
                    ],
                    stdout=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        deadline = t0 + args.timeout
        while (now := open_connections(port)) < args.idle:
            if time.monotonic() > deadline or any(p.poll() is not None for p in loads):
                result["idle_reached"] = now
                break
            print(f"{now} connections after {time.monotonic() - t0:.0f} s", file=sys.stderr)
            time.sleep(1.0)
        connect_s = time.monotonic() - t0
        idle = open_connections(port)
        result.update(idle=idle, connect_s=round(connect_s, 2), connect_per_s=round(idle / connect_s))
        # Idle means quiet: the workers' sweeps free the logins' read buffers and give the heap back first.
        time.sleep(IDLE_SETTLE_S)
        rss = proctree.rss_bytes(server.pid)
        result["rss_with_idle_bytes"] = rss
        result["rss_bytes_per_idle_conn"] = round((rss - result["rss_before_bytes"]) / max(idle, 1))
        result["with_idle"] = ping_figures(url, server.pid, loads, probe, args.perf_sched)
        if args.pause_holders:
            result["with_idle_holders_paused"] = holders_paused(url, server.pid, loads, probe)
            time.sleep(3.0)  # the pongs held up meanwhile come back at once: not in the next window
            result["with_idle_again"] = latency_window(url, server.pid, loads, probe)
        result["cpu_ratio_with_idle"] = round(
            result["with_idle"]["ping_us_cpu_per_msg"] / result["without_idle"]["ping_us_cpu_per_msg"], 2
        )
        result["idle_still_open"] = open_connections(port)
        print(json.dumps(result, indent=1))
        return 0 if result["idle_still_open"] == args.idle and idle == args.idle else 1
    finally:
        for p in loads:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        sys.stderr.write(open(log.name).read()[-4000:])
        log.close()
        if probe:
            print(f"probe files kept in {probe}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
