"""Instructions per message of each node of the relay across workers (valgrind cachegrind's I refs).

    python bench/icount_cluster.py N1 N2 ROUNDS BEFORE_DIR AFTER_DIR [senders|receivers]

bench/icount.py for bench/run_cluster.py's relay across workers: two ``wsa-fast serve --nats`` nodes on
one nats-server (GOMAXPROCS=1, as the embedded one), the senders on the first node, the receivers on
the second, one node at a time under cachegrind. Each tree runs with its own ``.venv``. Per build and
node: two runs driven with N1 and N2 messages; (I(N2) - I(N1)) / (N2 - N1) is the count per message.
Under valgrind the node is ~50x slower, so its batches are larger than at full speed: per-batch costs
weigh less here than in CPU time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

APP = ["--app", "bench.bench_app:app", "--host", "127.0.0.1", "--limits", "off"]
ROLES = ("senders' node", "receivers' node")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on {port}") from None
            time.sleep(0.3)


def instructions(tree: str, measured: int, messages: int, tmp: str) -> tuple[int, int]:
    """I refs of node ``measured`` (0 senders, 1 receivers) of ``tree``, relaying ``messages``; and how many arrived."""
    py = os.path.join(tree, ".venv", "bin", "python")
    wsa = os.path.join(tree, ".venv", "bin", "wsa-fast")
    nats_port = free_port()
    ports = [free_port(), free_port()]
    log, result = os.path.join(tmp, "valgrind.log"), os.path.join(tmp, "bench.json")
    procs = [
        subprocess.Popen(
            [os.path.join(tree, ".venv", "bin", "nats-server"), "-a", "127.0.0.1", "-p", str(nats_port)],
            env=dict(os.environ, GOMAXPROCS="1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    wait_listening(nats_port, procs[0])
    try:
        for node, port in enumerate(ports):
            nats_url = f"127.0.0.1:{nats_port}"
            command = [py, "-P", "-m", "wsa_fast", "serve", "--port", str(port), "--nats", nats_url, *APP]
            if node == measured:
                command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                           f"--log-file={log}", *command]  # fmt: skip
            procs.append(
                subprocess.Popen(command, cwd=tree, env=dict(os.environ, PYTHONHASHSEED="0"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )  # fmt: skip
            wait_listening(port, procs[-1])
        bench = subprocess.run(
            [wsa, "bench", f"ws://127.0.0.1:{ports[0]}/", "--scenario", "relay", "--clients", "16",
             "--rx-url", f"ws://127.0.0.1:{ports[1]}/", "--max-messages", str(messages), "--duration", "900",
             "--warmup", "0", "--quiet", "--json", result],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        with open(result) as f:
            counts = json.load(f)["counts"]
        if bench.returncode != 0 or counts["sent"] != messages or counts["lost"] or not counts["answered"]:
            raise SystemExit(f"{tree}: {counts} {bench.stderr[-400:]}")
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGINT if proc is procs[1 + measured] else signal.SIGTERM)
            proc.wait(timeout=300)
    with open(log) as f:
        refs = int(re.search(r"I\s+refs:\s+([\d,]+)", f.read()).group(1).replace(",", ""))
    return refs, counts["answered"]


def main() -> int:
    n1, n2, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    builds = {"before": sys.argv[4], "after": sys.argv[5]}
    nodes = [node for node in (0, 1) if len(sys.argv) < 7 or ROLES[node].startswith(sys.argv[6])]
    per_message: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="wsa-icount-") as tmp:
        for round_ in range(rounds):
            for node in nodes:
                for name in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
                    i1, a1 = instructions(builds[name], node, n1, tmp)
                    i2, a2 = instructions(builds[name], node, n2, tmp)
                    per = (i2 - i1) / (a2 - a1)
                    per_message.setdefault((node, name), []).append(per)
                    print(f"round {round_ + 1} {ROLES[node]:15s} {name:6s} {per:,.0f} instructions/message", flush=True)
    print("\n| node | before | after | after/before |\n|---|---:|---:|---:|")
    for node in nodes:
        before = sum(per_message[(node, "before")]) / rounds
        after = sum(per_message[(node, "after")]) / rounds
        print(f"| {ROLES[node]} | {before:,.0f} | {after:,.0f} | {after / before:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
