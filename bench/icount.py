"""Instructions the server executes per message (valgrind cachegrind's I refs): two builds compared.

    python bench/icount.py N1 N2 ping,relay,handler ROUNDS BEFORE_DIR AFTER_DIR

Scenarios are bench/run.py's closed-loop ones (the idle-connection ones excepted: valgrind is too slow
to open 10,000 connections); N counts messages sent, and the count per message divides by what was
answered (for a broadcast, deliveries).

A build is a source tree with its extensions built in place (`python setup.py build_ext --inplace`),
run as `python -P -m wsa_fast serve` with PYTHONPATH=DIR. Per scenario and build: two runs of the
server under cachegrind, driven with N1 and N2 messages by `wsa-fast bench`; (I(N2) - I(N1)) /
(N2 - N1) is the count per message, start-up and shutdown cancelled out. Unlike CPU time, the count
does not move with other programs' load, so it can tell a 1% change on a busy shared machine
(it counts instructions, not cycles: cache misses and branch mispredictions do not show).
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
BENCH = os.path.join(os.path.dirname(PY), "wsa-fast")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import SCENARIOS, bench_args  # noqa: E402  (bench/ is not a package; one table of scenarios)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def instructions(build_dir: str, scenario: str, messages: int, tmp: str) -> tuple[int, int]:
    """The server's instruction count, from start to exit, serving ``messages`` of ``scenario``, and the
    number of messages answered (deliveries, for a broadcast)."""
    port = free_port()
    log, result = os.path.join(tmp, "valgrind.log"), os.path.join(tmp, "bench.json")
    env = dict(os.environ, PYTHONPATH=build_dir, PYTHONHASHSEED="0")
    server = subprocess.Popen(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", f"--log-file={log}",
         PY, "-P", "-m", "wsa_fast", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--app", "bench.bench_app:app", "--limits", "off"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the server under valgrind did not listen on {port}") from None
                time.sleep(0.5)
        bench = subprocess.run(
            [BENCH, "bench", f"ws://127.0.0.1:{port}/", *bench_args(SCENARIOS[scenario]),
             "--max-messages", str(messages), "--duration", "900", "--warmup", "0", "--quiet", "--json", result],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        with open(result) as f:
            counts = json.load(f)["counts"]
        if bench.returncode != 0 or counts["sent"] != messages or counts["lost"] or not counts["answered"]:
            raise SystemExit(f"{scenario} on {build_dir}: {counts} {bench.stderr[-400:]}")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=300)
    with open(log) as f:
        refs = int(re.search(r"I\s+refs:\s+([\d,]+)", f.read()).group(1).replace(",", ""))
    return refs, counts["answered"]


def main() -> int:
    n1, n2, scenarios, rounds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4])
    unknown = [s for s in scenarios if s not in SCENARIOS or "idle" in SCENARIOS[s]]
    if unknown:
        raise SystemExit(
            f"icount: no such closed-loop scenario {', '.join(unknown)}; choose from "
            + ", ".join(s for s in SCENARIOS if "idle" not in SCENARIOS[s])
        )
    builds = {"before": sys.argv[5], "after": sys.argv[6]}
    per_message: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="wsa-icount-") as tmp:
        for round_ in range(rounds):
            for scenario in scenarios:
                for name in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
                    i1, a1 = instructions(builds[name], scenario, n1, tmp)
                    i2, a2 = instructions(builds[name], scenario, n2, tmp)
                    per = (i2 - i1) / (a2 - a1)
                    per_message.setdefault((scenario, name), []).append(per)
                    print(f"round {round_ + 1} {scenario:7s} {name:6s} {per:,.0f} instructions/message", flush=True)
    print("\n| scenario | before | after | after/before |\n|---|---:|---:|---:|")
    for scenario in scenarios:
        before = sum(per_message[(scenario, "before")]) / rounds
        after = sum(per_message[(scenario, "after")]) / rounds
        print(f"| {scenario} | {before:,.0f} | {after:,.0f} | {after / before:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
