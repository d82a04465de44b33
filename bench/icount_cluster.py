"""Instructions per message of each node of the relay across workers (valgrind cachegrind's I refs).

    python bench/icount_cluster.py N1 N2 ROUNDS BEFORE_DIR AFTER_DIR [senders|receivers]
    python bench/icount_cluster.py groups N1 N2 DIR     # one tree: by group of functions, against one worker

bench/icount.py for bench/run_cluster.py's relay across workers: two ``wsa-fast serve --nats`` nodes on
one nats-server (GOMAXPROCS=1, as the embedded one), the senders on the first node, the receivers on
the second, one node at a time under cachegrind. Each tree runs with its own ``.venv``. Per build and
node: two runs driven with N1 and N2 messages; (I(N2) - I(N1)) / (N2 - N1) is the count per message.
Under valgrind the node is ~50x slower, so its batches are larger than at full speed: per-batch costs
weigh less here than in CPU time.

``groups`` runs each node once more, and the same relay on one worker (no NATS), and splits each count by
group of functions (bench/profile_relay.py's ``GROUPS``, from cachegrind's per-function counts): what
crossing workers adds to the two nodes, over the relay on one worker, group by group.
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
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from profile_relay import group_of  # noqa: E402  (bench/ is not a package)

APP = ["--app", "bench.bench_app:app", "--host", "127.0.0.1", "--limits", "off"]
ROLES = ("senders' node", "receivers' node", "one worker")


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


def functions_of(path: str) -> dict[str, int]:
    """Instructions per group of functions, from a cachegrind output file."""
    out: dict[str, int] = defaultdict(int)
    file = function = ""
    with open(path) as f:
        for line in f:
            if line.startswith("fl="):
                file = line[3:].strip()
            elif line.startswith("fn="):
                function = line[3:].strip()
            elif line[:1].isdigit():
                out[group_of(function, file)] += int(line.split()[1])
    return out


def instructions(tree: str, measured: int, messages: int, tmp: str) -> tuple[int, int, dict[str, int]]:
    """I refs of node ``measured`` (0 senders, 1 receivers, 2 the relay on one worker) of ``tree``, relaying
    ``messages``; how many arrived; and the I refs by group of functions."""
    py = os.path.join(tree, ".venv", "bin", "python")
    wsa = os.path.join(tree, ".venv", "bin", "wsa-fast")
    nats_port = free_port()
    ports = [free_port(), free_port()] if measured < 2 else [free_port()]
    log, result = os.path.join(tmp, "valgrind.log"), os.path.join(tmp, "bench.json")
    out = os.path.join(tmp, "cachegrind.out")
    procs: list[subprocess.Popen] = []
    target = -1  # the index in procs of the node under valgrind
    if measured < 2:
        procs.append(
            subprocess.Popen(
                [os.path.join(tree, ".venv", "bin", "nats-server"), "-a", "127.0.0.1", "-p", str(nats_port)],
                env=dict(os.environ, GOMAXPROCS="1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        wait_listening(nats_port, procs[0])
    try:
        for node, port in enumerate(ports):
            command = [py, "-P", "-m", "wsa_fast", "serve", "--port", str(port), *APP]
            if measured < 2:
                command += ["--nats", f"127.0.0.1:{nats_port}"]
            if node == measured or measured == 2:
                command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
                           f"--log-file={log}", *command]  # fmt: skip
                target = len(procs)
            procs.append(
                subprocess.Popen(command, cwd=tree, env=dict(os.environ, PYTHONHASHSEED="0"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )  # fmt: skip
            wait_listening(port, procs[-1])
        rx = ["--rx-url", f"ws://127.0.0.1:{ports[1]}/"] if measured < 2 else []
        bench = subprocess.run(
            [wsa, "bench", f"ws://127.0.0.1:{ports[0]}/", "--scenario", "relay", "--clients", "16", *rx,
             "--max-messages", str(messages), "--duration", "900", "--warmup", "0", "--quiet", "--json", result],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        with open(result) as f:
            counts = json.load(f)["counts"]
        if bench.returncode != 0 or counts["sent"] != messages or counts["lost"] or not counts["answered"]:
            raise SystemExit(f"{tree}: {counts} {bench.stderr[-400:]}")
    finally:
        for i, proc in reversed(list(enumerate(procs))):
            proc.send_signal(signal.SIGINT if i == target else signal.SIGTERM)
            proc.wait(timeout=300)
    with open(log) as f:
        refs = int(re.search(r"I\s+refs:\s+([\d,]+)", f.read()).group(1).replace(",", ""))
    return refs, counts["answered"], functions_of(out)


def groups(n1: int, n2: int, tree: str) -> int:
    """Instructions per message by group of functions: each node across workers, and one worker."""
    per_group: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="wsa-icount-") as tmp:
        for node in (2, 0, 1):
            _, a1, f1 = instructions(tree, node, n1, tmp)
            _, a2, f2 = instructions(tree, node, n2, tmp)
            per_group[node] = {name: (f2.get(name, 0) - f1.get(name, 0)) / (a2 - a1) for name in set(f1) | set(f2)}
            print(f"{ROLES[node]}: {sum(per_group[node].values()):,.0f} instructions/message", flush=True)
    names = sorted(set().union(*per_group.values()), key=lambda n: -(per_group[0].get(n, 0) + per_group[1].get(n, 0)))
    print("\n| group of functions | one worker | senders' node | receivers' node | both nodes - one worker |")
    print("|---|---:|---:|---:|---:|")
    totals = {node: {"**total**": sum(counts.values())} for node, counts in per_group.items()}
    for name in names + ["**total**"]:
        one, tx, rx = ({**per_group[node], **totals[node]}.get(name, 0) for node in (2, 0, 1))
        if max(abs(one), abs(tx), abs(rx)) < 0.5:
            continue  # a group these processes never run (nats-server's)
        print(f"| {name} | {one:,.0f} | {tx:,.0f} | {rx:,.0f} | {tx + rx - one:+,.0f} |")
    return 0


def main() -> int:
    if sys.argv[1] == "groups":
        return groups(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    n1, n2, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    builds = {"before": sys.argv[4], "after": sys.argv[5]}
    nodes = [node for node in (0, 1) if len(sys.argv) < 7 or ROLES[node].startswith(sys.argv[6])]
    per_message: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="wsa-icount-") as tmp:
        for round_ in range(rounds):
            for node in nodes:
                for name in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
                    i1, a1, _ = instructions(builds[name], node, n1, tmp)
                    i2, a2, _ = instructions(builds[name], node, n2, tmp)
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
