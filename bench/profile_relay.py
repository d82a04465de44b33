"""Where the relay's CPU goes, per process and per group of functions: perf samples of each server process.

    python bench/profile_relay.py across           # senders' node, receivers' node, nats-server
    python bench/profile_relay.py local            # the same relay on one worker
    python bench/profile_relay.py across --seconds 8 --tree /path/to/other/checkout

The load is bench/run_cluster.py's relay (16 clients, window 64): two ``wsa-fast serve --nats`` nodes on one
nats-server (GOMAXPROCS=1, as embedded), senders on the first, receivers on the second; or one worker. While it
runs, ``perf record -e cpu-clock -g`` samples each server process at once for ``--seconds``; a sample is put in
a group by its leaf function (user space) or by the system call its kernel call chain is under (epoll_wait,
futex, read, write...), and each group gets its share of the process's CPU per relayed message. perf slows what
it samples (about 5-10%): compare rows and processes, not totals with other tables. Needs ``perf``.
``GROUPS`` also names the groups of bench/icount_cluster.py's instruction counts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APP = ["--app", "bench.bench_app:app", "--host", "127.0.0.1", "--limits", "off"]

# User-space functions by what they do (the first pattern that matches the symbol, or the file, wins).
GROUPS = [
    (r"KernelParser|simdjson|stage1|parse_string|Parser_parse", "JSON parse (simdjson)"),
    (r"picows|_picows_internals|unmask", "picows frames"),
    (r"_frame_gate|FrameReader|FrameGate", "FrameGate"),
    (r"write_json|write_frame|place_header|FrameBuffer_reserve|FrameBuffer_take|FrameBuffer_release", "frames out"),
    (r"ClusterRouter_forward|write_record|NatsWriter|publish_batch|send_batches|ClusterRouter_flush", "records out"),
    (r"read_batch|ClusterRouter_deliver|NatsReader|take_batch|next_payload", "records in"),
    (r"Hashtable|ClientTable|Session_|relay_elsewhere|admit|PendingTable|Connection_|Output_|Router_", "routing"),
    (r"^runtime\.|^internal/|^sync\.|^syscall\.|^net\.", "Go runtime"),
    (r"nats-server|^github\.com/nats-io", "nats-server's own code"),
    (r"uvloop|^uv_|^uv__|loop\.cpython", "uvloop"),
    (r"memcpy|memmove|memset", "libc memcpy"),
    (r"memcmp|strlen", "libc memcmp"),
    (r"malloc|^_int_|realloc|^free$|cfree", "malloc"),
]
SYSCALLS = [
    ("epoll_wait", "epoll_wait"),
    ("epoll_pwait", "epoll_wait"),
    ("futex", "futex"),
    ("nanosleep", "nanosleep"),
    ("sys_read", "read"),
    ("sys_recv", "read"),
    ("sys_write", "write/send"),
    ("sys_send", "write/send"),
    ("sched_yield", "sched_yield"),
]


def group_of(symbol: str, dso: str) -> str:
    """The group of a user-space function (``dso`` is its file)."""
    for pattern, name in GROUPS:
        if re.search(pattern, symbol) or re.search(pattern, os.path.basename(dso)):
            return name
    return "Python and the rest"


def kernel_group(chain: list[str]) -> str:
    """The group of a kernel sample, from its call chain (leaf first)."""
    for symbol in chain:
        for key, name in SYSCALLS:
            if key in symbol:
                return f"kernel: {name}"
    if any("softirq" in symbol or "net_rx_action" in symbol for symbol in chain):
        return "kernel: softirq (TCP delivery to a reader)"
    if any("page_fault" in symbol for symbol in chain):
        return "kernel: page faults"
    return "kernel: interrupts, preemption"


def classify(script: str) -> dict[str, int]:
    """Samples per group, from ``perf script -F ip,sym,dso`` (a sample is its call chain, then a blank line)."""
    counts: dict[str, int] = defaultdict(int)
    for sample in script.split("\n\n"):
        frames = [m.groups() for m in re.finditer(r"^\s*[0-9a-f]+ (.*) \((.*)\)$", sample, re.M)]
        if not frames:
            continue
        symbol, dso = frames[0]
        if "kernel.kallsyms" in dso:
            counts[kernel_group([s for s, d in frames if "kernel.kallsyms" in d])] += 1
        else:
            counts[group_of(re.sub(r"\+0x[0-9a-f]+$", "", symbol), dso)] += 1
    return counts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on {port}") from None
            time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample(pid: int, out: str, seconds: float) -> subprocess.Popen:
    """perf sampling ``pid`` (kernel call chains included) into ``out`` for ``seconds``."""
    command = ["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g", "-p", str(pid), "-o", out, "--", "sleep"]
    return subprocess.Popen(command + [str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("across", "local"))
    p.add_argument("--seconds", type=float, default=5.0, help="seconds sampled (default 5)")
    p.add_argument("--tree", default=ROOT, help="the checkout to run, with its .venv (default this one)")
    args = p.parse_args(argv)
    venv = os.path.join(args.tree, ".venv", "bin")
    tmp = tempfile.mkdtemp(prefix="wsa-profile-")
    roles: dict[str, subprocess.Popen] = {}
    try:
        urls = []
        nats_url = None
        if args.mode == "across":
            port = free_port()
            with open(os.path.join(tmp, "nats.conf"), "w") as f:
                f.write(f"listen: 127.0.0.1:{port}\nmax_payload: {1048576 + 65536}\n")
            roles["nats-server"] = subprocess.Popen(
                [os.path.join(venv, "nats-server"), "-c", os.path.join(tmp, "nats.conf")],
                env=dict(os.environ, GOMAXPROCS="1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_listening(port, roles["nats-server"])
            nats_url = f"127.0.0.1:{port}"
        for role in ("senders' node", "receivers' node") if nats_url else ("the one worker",):
            port = free_port()
            command = [os.path.join(venv, "wsa-fast"), "serve", "--port", str(port), *APP]
            roles[role] = subprocess.Popen(
                command + (["--nats", nats_url] if nats_url else []),
                cwd=args.tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_listening(port, roles[role])
            urls.append(f"ws://127.0.0.1:{port}/")
        time.sleep(1.0)  # presence between the nodes
        result = os.path.join(tmp, "bench.json")
        command = [os.path.join(venv, "wsa-fast"), "bench", urls[0], "--scenario", "relay", "--clients", "16",
                   "--window", "64", "--duration", str(args.seconds + 2), "--warmup", "1", "--json",
                   result]  # fmt: skip
        rx = ["--rx-url", urls[1]] if len(urls) > 1 else []
        load = subprocess.Popen(command + rx, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        before = {role: cpu_seconds(proc.pid) for role, proc in roles.items()}
        started = time.monotonic()
        perfs = [sample(proc.pid, os.path.join(tmp, f"{i}"), args.seconds) for i, proc in enumerate(roles.values())]
        for perf in perfs:
            perf.wait()
        elapsed = time.monotonic() - started
        spent = {role: cpu_seconds(proc.pid) - before[role] for role, proc in roles.items()}
        load.wait()
        with open(result) as f:
            rate = json.load(f)["summary"]["throughput"]
        messages = rate * elapsed
        print(f"relay, {args.mode}: {rate:,.0f} msg/s, load average {os.getloadavg()[0]:.1f}; µs CPU per message")
        for i, role in enumerate(roles):
            script = subprocess.run(["perf", "script", "-i", os.path.join(tmp, f"{i}"), "-F", "ip,sym,dso"],
                                    capture_output=True, text=True, check=True).stdout  # fmt: skip
            counts = classify(script)
            total = sum(counts.values()) or 1
            us = spent[role] * 1e6 / messages
            print(f"\n| {role} ({total} samples) | µs/msg | share |\n|---|---:|---:|")
            for name, count in sorted(counts.items(), key=lambda kv: -kv[1]):
                print(f"| {name} | {us * count / total:.3f} | {100 * count / total:.1f}% |")
            print(f"| **total** | **{us:.3f}** | |")
    finally:
        for proc in reversed(list(roles.values())):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["rm", "-rf", tmp], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
