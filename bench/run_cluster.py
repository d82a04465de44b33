"""Bench the gateway across processes: ``--workers 2`` against one worker, and relay across workers.

    python bench/run_cluster.py            # about 1.5 min: a table, and bench/out/cluster.json
    python bench/run_cluster.py --rounds 1 --duration 1
    python bench/run_cluster.py --smoke    # CI: every configuration once, briefly; fails on any loss
    python bench/run_cluster.py --only relay --rounds 5   # the configurations whose name says "relay"

Nothing is pinned: the workers, the nats-server and the load generator share both cores,
as a gateway and its clients on one machine would ("load generator included"). Each
scenario alternates its configurations for ``--rounds`` rounds and reports the median, so
the ratios compare runs made minutes apart at most.

- ping: ``wsa@v1/ping`` closed loop (16 connections, 64 in flight each) against
  ``wsa-fast serve`` and ``wsa-fast serve --workers 2``.
- relay: events from 8 senders to 8 receivers, all on one worker, and with the senders
  on one node and the receivers on another (two ``wsa-fast serve --nats`` on one
  nats-server): every message crosses NATS, batched per loop iteration. Its CPU is also
  split by process (the senders' node, the receivers' node, nats-server), and the batching
  shown: messages per write of the senders' node to NATS (one write carries a loop
  iteration's PUB commands), and bytes per message through NATS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import PY, ROOT, drive, ensure_built, free_port, log  # noqa: E402

from wsa_fast.loadtest import proctree  # noqa: E402

# The console script beside this Python: the venv's, even when nobody activated it.
WSA_FAST = os.path.join(os.path.dirname(PY), "wsa-fast")
# Raw speed: the rate limits and max_pending would refuse the floods.
APP = ["--app", "bench.bench_app:app", "--host", "127.0.0.1", "--limits", "off"]
PING = dict(mode="ping", conns=16, window=64)
RELAY = dict(mode="relay", conns=8, window=64)


class Gateway:
    """``wsa-fast serve`` (or two nodes on one nats-server), in its own process group."""

    def __init__(self, *extra: str, nodes: int = 1) -> None:
        self.ports = [free_port() for _ in range(nodes)]
        if nodes == 1:
            command = [WSA_FAST, "serve", "--port", str(self.ports[0]), *APP, *extra]
        else:
            command = [PY, os.path.join(HERE, "cluster_nodes.py"), *map(str, self.ports)]
        self.log = open(os.path.join(HERE, "out", "cluster-server.log"), "a")
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        for port in self.ports:
            while True:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not start (see bench/out/cluster-server.log)")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.05)
        time.sleep(1.0 if len(self.ports) > 1 or "--workers" in self.proc.args else 0.2)

    def url(self, i: int = 0) -> str:
        return f"ws://127.0.0.1:{self.ports[i]}/"

    def stop(self) -> None:
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def cpu_by_process(gateway: Gateway) -> dict[str, float]:
    """CPU seconds so far of each process of a multi-node gateway: each node by its port, and nats-server."""
    scan = proctree.scan()
    out: dict[str, float] = {}
    for pid in proctree.tree(scan, gateway.proc.pid) - {gateway.proc.pid}:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        port = next((p for p in gateway.ports if str(p).encode() in argv), None)
        role = (
            "nats-server"
            if "nats" in scan[pid][2]
            else "senders' node"
            if port == gateway.ports[0]
            else "receivers' node"
        )
        out[role] = out.get(role, 0.0) + scan[pid][1]
    return out


def nats_writes(gateway: Gateway) -> tuple[int, int]:
    """Write calls and bytes so far of the senders' node: its writes to NATS (a websocket frame goes out by
    send(), which /proc/PID/io leaves out, and a relay's senders get no frames back)."""
    import psutil

    for pid in proctree.tree(proctree.scan(), gateway.proc.pid) - {gateway.proc.pid}:
        try:
            process = psutil.Process(pid)
            if str(gateway.ports[0]) in process.cmdline():
                io = process.io_counters()
                return io.write_count, io.write_chars
        except psutil.Error:
            continue
    return 0, 0


def load(gateway: Gateway, opts: dict, args: argparse.Namespace, rx_node: int = 0) -> dict:
    extra = ["--server-pid", str(gateway.proc.pid), "--duration", str(args.duration), "--warmup", str(args.warmup)]
    if rx_node:
        extra += ["--rx-url", gateway.url(rx_node)]
    if args.smoke:
        extra += ["--max-messages", "20000"]
    before = cpu_by_process(gateway) if rx_node else {}
    writes_before = nats_writes(gateway) if rx_node else (0, 0)
    result = drive(gateway.url(0), opts, extra, timeout=args.duration + args.warmup + 60)
    if rx_node and result.get("ok"):
        writes, written = (after - before for after, before in zip(nats_writes(gateway), writes_before))
        if writes:
            result["msgs_per_nats_write"] = result["delivered_total"] / writes
            result["nats_bytes_per_msg"] = written / result["delivered_total"]
        # Each process's share of the tree's CPU over the whole run (set-up and warm-up included),
        # applied to the measured CPU per message: where a message crossing workers spends it.
        spent = {role: cpu - before.get(role, 0.0) for role, cpu in cpu_by_process(gateway).items()}
        total = sum(spent.values())
        if total > 0:
            result["split_us_per_msg"] = {
                role: result["server_cpu_us_per_msg"] * cpu / total for role, cpu in sorted(spent.items())
            }
    return result


CONFIGS = {
    "ping, 1 worker": (dict(), PING, 0),
    "ping, --workers 2": (dict(extra=("--workers", "2")), PING, 0),
    "relay, same worker": (dict(), RELAY, 0),
    "relay, across workers (2 nodes, NATS)": (dict(nodes=2), RELAY, 1),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--out", default=os.path.join(HERE, "out", "cluster.json"))
    p.add_argument("--smoke", action="store_true", help="one short round with a message cap: no timing claims")
    p.add_argument("--only", action="append", metavar="TEXT", help="only configurations whose name contains TEXT")
    args = p.parse_args(argv)
    configs = {name: c for name, c in CONFIGS.items() if not args.only or any(t in name for t in args.only)}
    if args.smoke:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.0
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    ensure_built()
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for round_no in range(1, args.rounds + 1):
        for name, (how, opts, rx_node) in configs.items():
            gateway = Gateway(*how.get("extra", ()), nodes=how.get("nodes", 1))
            try:
                result = load(gateway, opts, args, rx_node)
            finally:
                gateway.stop()
            runs[name].append(result)
            log(
                f"round {round_no} {name}: {result.get('msg_per_s', 0):,.0f} msg/s "
                f"{'ok' if result.get('ok') else 'FAILED ' + str(result.get('error', ''))[:300]}"
            )
    rows = []
    for name, results in runs.items():
        good = [r for r in results if r.get("ok")]
        rows.append(
            {
                "config": name,
                "ok": len(good) == len(results),
                "msg_per_s": statistics.median(r["msg_per_s"] for r in good) if good else None,
                "server_cpu_us_per_msg": statistics.median(r["server_cpu_us_per_msg"] for r in good) if good else None,
                "loadgen_cpu_us_per_msg": statistics.median(r["lg_cpu_us_per_msg"] for r in good) if good else None,
                "all_msg_per_s": [r.get("msg_per_s") for r in results],
                "all_server_cpu_us_per_msg": [r.get("server_cpu_us_per_msg") for r in results],
                "msgs_per_nats_write": statistics.median(r["msgs_per_nats_write"] for r in good)
                if good and all("msgs_per_nats_write" in r for r in good)
                else None,
                "nats_bytes_per_msg": statistics.median(r["nats_bytes_per_msg"] for r in good)
                if good and all("nats_bytes_per_msg" in r for r in good)
                else None,
                "split_us_per_msg": {
                    role: statistics.median(r["split_us_per_msg"][role] for r in good if "split_us_per_msg" in r)
                    for role in (good[0].get("split_us_per_msg") or {} if good else {})
                },
            }
        )
    by = {r["config"]: r for r in rows}
    one = (by.get("ping, 1 worker") or {}).get("msg_per_s")
    two = (by.get("ping, --workers 2") or {}).get("msg_per_s")
    ping_ratio = two / one if one and two else None
    print(
        f"\nmachine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print("| configuration | msg/s (median) | server µs CPU/msg | loadgen µs CPU/msg | every round, msg/s |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['msg_per_s'] or 0:,.0f} | {r['server_cpu_us_per_msg'] or 0:.2f} "
            f"| {r['loadgen_cpu_us_per_msg'] or 0:.2f} | "
            f"{', '.join(f'{v:,.0f}' if v else 'failed' for v in r['all_msg_per_s'])} |"
        )
    for r in rows:
        if r["split_us_per_msg"]:
            print(
                f"\n{r['config']}, by process (µs CPU/msg, median): "
                + ", ".join(f"{role} {us:.2f}" for role, us in r["split_us_per_msg"].items())
            )
        if r["msgs_per_nats_write"]:
            print(
                f"{r['config']}, batching (median): {r['msgs_per_nats_write']:,.0f} messages per write to NATS, "
                f"{r['nats_bytes_per_msg']:.1f} bytes per message"
            )
    local = (by.get("relay, same worker") or {}).get("server_cpu_us_per_msg")
    across = (by.get("relay, across workers (2 nodes, NATS)") or {}).get("server_cpu_us_per_msg")
    if local and across:
        print(f"relay across workers ÷ on one worker (server CPU per message): {across / local:.2f}x")
    print(f"\n--workers 2 ÷ 1 worker (ping): {ping_ratio:.2f}x" if ping_ratio else "\nno ping ratio")
    with open(args.out, "w") as f:
        json.dump({"rows": rows, "ping_ratio": ping_ratio, "args": vars(args)}, f, indent=1)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
