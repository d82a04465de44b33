"""Run the WSA bench: each server pinned to core 0, the load generator on core 1.

    python bench/run.py                 # full run (< 5 min), table + bench/out/results.json + bench/out/latency.png
    python bench/run.py --smoke         # CI: a few thousand messages per scenario, fails on any loss or error
    python bench/run.py --servers wsa-fast,websockets --scenarios ping,relay,latency
    python bench/run.py --servers wsa-fast --scenarios ping,handler,ping-idle-10k,broadcast-1k
    python bench/run.py --servers wsa-fast,wsa-fast+policy --scenarios ping,relay,handler   # the policy's cost
    python bench/run.py --servers wsa-fast --scenarios fairness     # one flooder, 100 calm clients, default limits
    python bench/run.py --servers wsa-fast,wsa-fast-limits --scenarios ping,relay   # what the limits cost

The gateway under test is the `wsa-fast` installed beside this Python (or --server-cmd), run
with `--limits off` for raw speed (fairness runs it with its default limits); the run fails
when it is missing. The published plot (bench/latency.png) changes only with --plot.
Numbers are only comparable within one run: the box is shared and absolute numbers drift.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # servers run here, so `--app bench.bench_app:app` imports
PY = sys.executable
sys.path.insert(0, HERE)

SERVER_CORE, LOADGEN_CORE = 0, 1
# The gateway under test and the load generator (`wsa-fast bench`): both installed with this Python
# (a venv nobody activated included), as the tests start them.
WSA_FAST = os.path.join(os.path.dirname(PY), "wsa-fast")
# Raw speed: the rate limits and max_pending would refuse the load generator's floods, and the connection
# limits its 10,000 idle connections and 1,001 broadcast clients, all from 127.0.0.1.
RAW_SPEED_FLAGS = ["--limits", "off", "--max-connections", "0", "--max-connections-per-ip", "0"]
DEFAULT_GATEWAY_CMD = f"{shlex.quote(WSA_FAST)} serve --host 127.0.0.1 --port {{port}} --app bench.bench_app:app " + (
    " ".join(RAW_SPEED_FLAGS)
)
# "wsa-fast-limits": the same gateway with every limit on, set too high to refuse: what checking them costs.
LIMITS_ON_FLAGS = [
    "--limits",
    "on",
    "--rate-limit-messages",
    "1e12",
    "--rate-limit-bytes",
    "1e15",
    "--rate-limit-broadcasts",
    "1e12",
    "--max-pending",
    "1000000000",
]

# Closed-loop scenarios. Floors only answer pings (they echo), so only ping scenarios run on them.
SCENARIOS = {
    "ping": dict(mode="ping", conns=8, window=64),
    "ping-compact": dict(mode="ping", form="compact", conns=8, window=64),
    "relay": dict(mode="relay", conns=8, window=64),
    "relay-mixed": dict(mode="relay-mixed", conns=8, window=64),
    # relay of 4 KiB messages (a padded text param): the decoder's SIMD scan of the payload dominates.
    "relay-large": dict(mode="relay", conns=8, window=64, payload_bytes=4096),
    "broadcast": dict(mode="broadcast", receivers=32, window=8),
    # A sync Python handler (bench_app.py) answering each request: what the gateway adds around user code.
    "handler": dict(mode="handler", conns=8, window=64),
    # The same handler as a coroutine function (settled in a task), and one raising WSAError (a fail response).
    "handler-async": dict(mode="handler", method="bench@v1/echo_async", conns=8, window=64),
    "handler-error": dict(mode="handler", method="bench@v1/refuse", expect_fail="CONFLICT", conns=8, window=64),
    # ping next to 10,000 logged-in silent connections: per-message CPU and memory per connection at scale.
    # Before broadcast-1k, so the server's heap has no freed connections to reuse and RSS grows in full.
    "ping-idle-10k": dict(mode="ping", conns=8, window=64, idle=10000),
    # A sender keeping 32 events in flight to 1,000 receivers: each receiver's socket then gets several
    # frames per write. The peers' cost per delivery does not depend on the window (measured 8 vs 32).
    "broadcast-1k": dict(mode="broadcast", receivers=1000, window=32),
}
FLOOR_SCENARIOS = ("ping", "ping-compact")
# Scenarios only wsa-fast runs, and why (printed as notes under the table).
GATEWAY_ONLY = {
    "handler": "the peers have no app API",
    "handler-async": "the peers have no app API",
    "handler-error": "the peers have no app API",
    "ping-idle-10k": "wsa-fast's own scale targets",
}
# --smoke: every scenario, small enough to stay cheap.
SMOKE = {
    "handler": dict(max_messages=1000),
    "handler-async": dict(max_messages=1000),
    "handler-error": dict(max_messages=1000),
    "broadcast-1k": dict(receivers=200, max_messages=100),
    "ping-idle-10k": dict(idle=300),
}
# wsa-fast targets the scale table checks: CPU/msg of ping-idle-10k over ping, server bytes per idle connection.
IDLE_CPU_RATIO_TARGET = 1.3
IDLE_BYTES_TARGET = 4096
ALL_SERVERS = ("floor", "floor-single", "websockets", "node-ws", "wsa-fast")
# Run only when named: wsa-fast with the access policy of bench/policy.toml, to price the check, and
# with every limit on but too high to refuse, to price the limits (the flags after --limits off win).
EXTRA_SERVERS = {"wsa-fast+policy": ["--config", os.path.join(HERE, "policy.toml")], "wsa-fast-limits": LIMITS_ON_FLAGS}
LAT_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
# The open-loop pacer spins on one core; above this rate it cannot pace evenly any more.
LAT_MAX_RATE = 1_000_000
# Seconds of flood in the fairness scenario (half requests, half broadcasts), after half as long without.
FAIRNESS_DURATION = 6.0
# Other programs' share of a core above which a run is marked noisy.
NOISY = 0.10
# After this many seconds a full run stops waiting for a quiet box and retrying noisy scenarios.
EXTRAS_BUDGET_S = 150


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def pin(core):
    def set_affinity():
        os.sched_setaffinity(0, {core})

    return set_affinity


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_built():
    """The floor echo is compiled in place; the load generator is the installed `wsa-fast bench`."""
    if not os.path.exists(WSA_FAST):
        raise SystemExit(
            f"wsa-fast is not installed beside {PY} (run `make install`): "
            "the bench drives every server with `wsa-fast bench`"
        )
    if _stale("floor_echo"):
        log("building floor_echo (bench/setup.py)")
        subprocess.run([PY, os.path.join(HERE, "setup.py")], cwd=HERE, check=True, stdout=subprocess.DEVNULL)


def _stale(mod: str) -> bool:
    src = os.path.join(HERE, f"{mod}.pyx")
    built = [f for f in os.listdir(HERE) if f.startswith(mod + ".") and f.endswith(".so")]
    return not built or os.path.getmtime(os.path.join(HERE, built[0])) < os.path.getmtime(src)


def ensure_node(notes: list[str]) -> bool:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        notes.append("node-ws skipped: node not found")
        return False
    peers = os.path.join(HERE, "peers")
    if not os.path.isdir(os.path.join(peers, "node_modules", "ws")):
        if npm is None:
            notes.append("node-ws skipped: npm not found to install ws")
            return False
        # The lock file pins ws; `npm ci` installs exactly that.
        verb = "ci" if os.path.exists(os.path.join(peers, "package-lock.json")) else "install"
        log(f"installing ws into bench/peers/node_modules (npm {verb})")
        r = subprocess.run(
            [npm, verb, "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=peers,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
        if r.returncode != 0:
            notes.append(f"node-ws skipped: npm install failed: {r.stderr.strip()[-300:]}")
            return False
    return True


class Server:
    """One server under test, as a pinned subprocess in its own process group."""

    def __init__(self, name: str, cmd: list[str], floor: bool, logdir: str, env: dict | None = None):
        self.name, self.cmd, self.floor = name, cmd, floor
        self.env = dict(os.environ, **env) if env else None
        self.port = free_port()
        self.cmd = [c.replace("{port}", str(self.port)) for c in cmd]
        self.logpath = os.path.join(logdir, f"{name}.log")
        self.proc = None

    def start(self, timeout=20.0):
        self.logf = open(self.logpath, "w")
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=pin(SERVER_CORE),
            start_new_session=True,
            cwd=ROOT,
            env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout}s: {self.log_tail()}")

    def log_tail(self, n=1500) -> str:
        try:
            with open(self.logpath) as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        # The group is the one start_new_session made for this server: its workers, nothing else.
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.logf.close()


def fairness(gateway_cmd: list[str], logdir: str, duration: float) -> dict:
    """bench/fairness.py against the gateway with its default limits (the flags after --limits off win).

    The gateway serves bench/loop_lag_app.py, which probes its own loop: its stalls, apart from the clients'.
    """
    lag_file = os.path.abspath(os.path.join(logdir, "fairness-server-loop-lag.txt"))
    server = Server(
        "wsa-fast-fairness",
        gateway_cmd + ["--limits", "on", "--app", "bench.loop_lag_app:app"],
        False,
        logdir,
        env={"WSA_BENCH_LOOP_LAG": lag_file},
    )
    log(f"== fairness: {' '.join(server.cmd)}")
    try:
        server.start()
        cmd = [
            PY,
            os.path.join(HERE, "fairness.py"),
            "--url",
            f"ws://127.0.0.1:{server.port}/",
            "--server-pid",
            str(server.proc.pid),
            "--duration",
            str(duration),
            "--server-lag",
            lag_file,
        ]
        with open(os.path.join(logdir, "fairness-clients.log"), "w") as errors:
            r = subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                timeout=duration * 3 + 60,
                preexec_fn=pin(LOADGEN_CORE),
            )
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, IndexError, ValueError, RuntimeError) as e:
        res = {"ok": False, "error": str(e)}
    finally:
        server.stop()
    res.update(server="wsa-fast", scenario="fairness")
    log(
        f"   fairness p99 {fmt(res.get('p99_us'))} µs, p99.9 {fmt(res.get('p999_us'))} µs, "
        f"disconnected {res.get('disconnected')} {res.get('error', '')}"
    )
    return res


def fairness_table(rows: list[dict]) -> str:
    head = (
        "| phase | calm pings | p50 µs | p99 µs | p99.9 µs | max µs | clients' loop lag p99 / max µs "
        "| gateway's loop lag p99 / max µs | gateway's CPU between wakes p99 / max µs |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        for phase, label in (
            ("baseline_", "no flood"),
            ("requests_", "flood of requests"),
            ("broadcasts_", "flood of 100 KB broadcasts"),
        ):
            lines.append(
                f"| {label} | {r.get(phase + 'pings')} | {fmt(r.get(phase + 'p50_us'))} "
                f"| {fmt(r.get(phase + 'p99_us'))} | {fmt(r.get(phase + 'p999_us'))} "
                f"| {fmt(r.get(phase + 'max_us'))} "
                f"| {fmt(r.get(phase + 'loop_lag_p99_us'))} / {fmt(r.get(phase + 'loop_lag_max_us'))} "
                f"| {fmt(r.get(phase + 'server_loop_lag_p99_us'))} / {fmt(r.get(phase + 'server_loop_lag_max_us'))} "
                f"| {fmt(r.get(phase + 'server_loop_cpu_p99_us'))} / {fmt(r.get(phase + 'server_loop_cpu_max_us'))} |"
            )
        flood = r.get("flooder") or {}
        lines.append(
            f"\nclients disconnected: {r.get('disconnected')}; broadcasts each receiver got: "
            f"{r.get('broadcasts_received')}; flooder: "
            f"{flood.get('sent')} sent, {flood.get('answered')} answered, {flood.get('refused')} RATE_LIMITED, "
            f"closed {flood.get('closed')} times; server RSS {fmt((r.get('server_rss_before_kib') or 0) / 1024)}"
            f" MiB before the flood, peak {fmt((r.get('server_peak_rss_kib') or 0) / 1024)} MiB"
        )
    return "\n".join(lines)


def loadgen(server: Server, opts: dict, timeout: float) -> dict:
    extra = ["--server-pid", str(server.proc.pid), "--server-core", str(SERVER_CORE)]
    return drive(
        f"ws://127.0.0.1:{server.port}/", dict(opts, echo=server.floor), extra, timeout, preexec_fn=pin(LOADGEN_CORE)
    )


def bench_args(opts: dict) -> list[str]:
    """A scenario of this suite (mode, conns, receivers, ...) as `wsa-fast bench` options."""
    o = dict(opts)
    mode = o.pop("mode")
    conns = o.pop("conns", 8)
    if mode == "latency":
        mode = o.pop("lat_kind", "ping")
    out = []
    if mode == "ping":
        out += ["--scenario", "ping", "--clients", str(conns)]
    elif mode == "handler":
        method = o.pop("method", "bench@v1/echo")
        out += ["--scenario", "call", method, "--params", '{"n":1}', "--clients", str(conns)]
    elif mode in ("relay", "relay-mixed"):
        out += ["--scenario", "relay", "--clients", str(2 * conns)]
        if mode == "relay-mixed":
            out += ["--rx-form", "compact"]
    elif mode == "broadcast":
        out += ["--scenario", "broadcast", "--clients", str(o.pop("receivers", 32) + 1)]
    elif mode == "connect":
        out += ["--scenario", "connect", "--clients", str(conns)]
    else:
        raise ValueError(f"unknown mode {mode}")
    if o.pop("echo", False):
        out.append("--echo")
    for key, value in o.items():
        if isinstance(value, bool):
            out += [f"--{key.replace('_', '-')}"] if value else []
        else:
            out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def drive(url: str, opts: dict, extra: list[str], timeout: float, **popen) -> dict:
    """Run `wsa-fast bench` and give its result in this suite's shape (one row of the tables)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wsa-bench-") as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [WSA_FAST, "bench", url, *bench_args(opts), *extra, "--quiet", "--json", out]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **popen)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"wsa-fast bench timed out after {timeout:.0f}s"}
        try:
            with open(out) as f:
                res = json.load(f)
        except (OSError, ValueError):
            return {"ok": False, "error": (r.stderr.strip()[-800:] or f"wsa-fast bench exit {r.returncode}")}
    return suite_row(res, opts)


def suite_row(res: dict, opts: dict) -> dict:
    """The fields the tables read, from a `wsa-fast bench --json` result."""
    c, m, s = res["counts"], res["measured"], res["summary"]
    server = res.get("server") or {}
    lat = s["latency_ns"]
    row = {
        "mode": opts["mode"],
        "form": opts.get("form", "verbose"),
        "conns": opts.get("conns"),
        "window": opts.get("window"),
        "receivers": opts.get("receivers"),
        "seconds": m["seconds"],
        "messages": m["answered"],
        "msg_per_s": s["throughput"],
        "sent_total": c["sent"],
        "delivered_total": c["answered"],
        "lost": c["lost"],
        "duplicated": c["duplicated"],
        "unknown": c["unknown"],
        "bad": c["garbled"] + c["failed"],
        "fails": res["fails"],
        "disconnects": c["disconnects"],
        "bad_samples": res.get("bad_samples", []),
        "setup_s": res.get("setup_s"),
        "lg_cpu_us_per_msg": s["generator_us_per_msg"],
        "lg_util": s["generator_util"],
        "server_cpu_s": server.get("cpu_s"),
        "server_util": server.get("util"),
        "server_cpu_us_per_msg": server.get("cpu_us_per_msg"),
        "ksoftirqd_util": server.get("ksoftirqd_util"),
        "others_util": server.get("others_util"),
        "others_top": server.get("others_top"),
        "steal_util": server.get("steal_util"),
        "ok": res["ok"],
    }
    for key in ("idle", "idle_setup_s", "idle_rss_before", "idle_rss_after", "idle_rss_bytes_per_conn"):
        if key in res:
            row[key] = res[key]
    if opts["mode"] == "latency":
        row["offered_rate"] = opts.get("rate")
        row["throttled"] = c["skipped"]
        row["latency_us"] = {k.lstrip("p"): v / 1e3 for k, v in lat.items()}
    return row


def others_busy(seconds: float = 0.5) -> tuple[float, str]:
    """(share of a core used by other programs over a short sample, who they were)."""
    from wsa_fast.loadtest import proctree

    a, i0, t0 = proctree.scan(), proctree.idle_seconds(), time.monotonic()
    time.sleep(seconds)
    b, i1, t1 = proctree.scan(), proctree.idle_seconds(), time.monotonic()
    dt = t1 - t0
    busy = (i1[0] * dt - (i1[1] - i0[1])) / dt
    names = proctree.delta_except(a, b, proctree.tree(b, os.getpid()) | {os.getpid()})
    top = ", ".join(f"{k} {v / dt:.0%}" for k, v in sorted(names.items(), key=lambda kv: -kv[1])[:3])
    return busy, top


def wait_quiet(limit: float, max_wait: float) -> str | None:
    """Wait until other programs use under `limit` of a core; say who was busy if they never stop."""
    deadline = time.monotonic() + max_wait
    while True:
        busy, top = others_busy()
        if busy < limit:
            return None
        if time.monotonic() >= deadline:
            return f"box busy ({busy:.0%} of a core: {top}); numbers may be noisy"
        log(f"   waiting for a quiet box: {busy:.0%} of a core ({top})")
        time.sleep(1.0)


def is_noisy(r: dict) -> bool:
    return (r.get("others_util") or 0) > NOISY or (r.get("steal_util") or 0) > 0.02


def budget(opts: dict) -> float:
    """Seconds a loadgen run may take: its load and drain, plus time to connect and log in."""
    # The load generator opens connections 64 at a time, a few thousand a second; 300/s leaves room for a slow server.
    many = opts.get("receivers", 0) + opts.get("idle", 0)
    return opts["duration"] + opts["warmup"] + opts["drain"] + 15.0 + many / 300


def runs_on(scenario: str, server: str, is_floor: bool) -> bool:
    if is_floor:
        return scenario in FLOOR_SCENARIOS
    return scenario not in GATEWAY_ONLY or server.startswith("wsa-fast")


def scenario_label(scenario: str) -> str:
    return f"{scenario} (wsa-fast only)" if scenario in GATEWAY_ONLY else scenario


def server_specs(args, notes) -> list[tuple[str, list[str], bool]]:
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    gateway_cmd = shlex.split(args.server_cmd)
    if any(name.startswith("wsa-fast") for name in wanted) and (
        not gateway_cmd or shutil.which(gateway_cmd[0]) is None
    ):
        # The system under test: a run without it would report only the others, so it fails first.
        raise SystemExit(
            f"the gateway under test is missing: {gateway_cmd[0] if gateway_cmd else '(empty --server-cmd)'}"
            " not found (make install, or pip install wsa-fast into this Python's environment)"
        )
    specs = []
    for name in wanted:
        if name == "floor":
            specs.append((name, [PY, os.path.join(HERE, "run_floor.py"), "--port", "{port}"], True))
        elif name == "floor-single":
            specs.append((name, [PY, os.path.join(HERE, "run_floor.py"), "--port", "{port}", "--single-write"], True))
        elif name == "websockets":
            specs.append((name, [PY, os.path.join(HERE, "peers", "websockets_gateway.py"), "--port", "{port}"], False))
        elif name == "node-ws":
            if ensure_node(notes):
                specs.append(
                    (
                        name,
                        [shutil.which("node"), os.path.join(HERE, "peers", "node_ws_gateway.js"), "--port", "{port}"],
                        False,
                    )
                )
        elif name == "wsa-fast" or name in EXTRA_SERVERS:
            specs.append((name, gateway_cmd + EXTRA_SERVERS.get(name, []), False))
        else:
            raise SystemExit(f"unknown server {name!r}; known: {', '.join((*ALL_SERVERS, *EXTRA_SERVERS))}")
    for spec in args.gateway:
        # Another build of the gateway, measured in the same run (e.g. a portable and a -march=native build).
        name, _, cmd = spec.partition("=")
        argv = shlex.split(cmd)
        if not name.startswith("wsa-fast-") or not argv or shutil.which(argv[0]) is None:
            raise SystemExit(f"--gateway {spec!r}: want wsa-fast-NAME=CMD with CMD an existing command")
        specs.append((name, argv, False))
    return specs


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{nd}f}"
    return str(v)


def flags(r: dict) -> str:
    out = []
    if not r.get("ok"):
        out.append("FAIL")
    if is_noisy(r):
        out.append("noisy")
    if (r.get("lg_util") or 0) > 0.9 and (r.get("server_util") or 1) < 0.9 and r.get("mode") != "latency":
        out.append("loadgen-bound")
    if r.get("throttled"):
        out.append("saturated")  # open loop: the server fell so far behind that sends were skipped
    return ",".join(out) or "ok"


def status(r: dict) -> str:
    return flags(r) + (f" ({r['error'][:60]})" if r.get("error") else "")


def throughput_table(rows: list[dict]) -> str:
    floor = {r["scenario"]: r for r in rows if r["server"] == "floor" and r.get("ok")}
    head = (
        "| server | scenario | msg/s | server µs CPU/msg | CPU/msg ÷ floor | msg/s ÷ floor "
        "| server util | ksoftirqd | loadgen µs/msg | loadgen util | others | status |"
    )
    out = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        ref = floor.get(r["scenario"]) or floor.get("ping")
        cpu = r.get("server_cpu_us_per_msg")
        cpu_ratio = cpu / ref["server_cpu_us_per_msg"] if ref and cpu and ref.get("server_cpu_us_per_msg") else None
        rate_ratio = r["msg_per_s"] / ref["msg_per_s"] if ref and r.get("msg_per_s") else None
        out.append(
            "| "
            + " | ".join(
                [
                    r["server"],
                    scenario_label(r["scenario"]),
                    fmt(r.get("msg_per_s")),
                    fmt(cpu, 2),
                    fmt(cpu_ratio, 1),
                    fmt(rate_ratio, 3),
                    fmt(r.get("server_util"), 2),
                    fmt(r.get("ksoftirqd_util"), 2),
                    fmt(r.get("lg_cpu_us_per_msg"), 2),
                    fmt(r.get("lg_util"), 2),
                    fmt(r.get("others_util"), 2),
                    status(r),
                ]
            )
            + " |"
        )
    return "\n".join(out)


def broadcast_table(rows: list[dict]) -> str:
    """broadcast-1k per server: every delivery is one message, so msg/s is deliveries/s."""
    out = [
        "| server | receivers | deliveries/s | server µs CPU/delivery | server util | loadgen util "
        "| connect + login s | status |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["scenario"] == "broadcast-1k":
            out.append(
                "| "
                + " | ".join(
                    [
                        r["server"],
                        fmt(r.get("receivers")),
                        fmt(r.get("msg_per_s")),
                        fmt(r.get("server_cpu_us_per_msg"), 2),
                        fmt(r.get("server_util"), 2),
                        fmt(r.get("lg_util"), 2),
                        fmt(r.get("setup_s"), 2),
                        status(r),
                    ]
                )
                + " |"
            )
    return "\n".join(out)


def idle_table(rows: list[dict], judge: bool) -> str:
    """ping-idle-10k against plain ping on the same server: CPU/msg ratio and RSS per idle connection."""
    ping = {r["server"]: r for r in rows if r["scenario"] == "ping" and r.get("ok")}
    out = [
        f"| server | idle conns | ping µs CPU/msg | with idle µs CPU/msg | ratio (target <= {IDLE_CPU_RATIO_TARGET}) "
        f"| server RSS bytes per idle conn (target <= {IDLE_BYTES_TARGET}) | RSS before → after, MiB "
        f"| idle connect + login s | status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["scenario"] != "ping-idle-10k":
            continue
        base = (ping.get(r["server"]) or {}).get("server_cpu_us_per_msg")
        cpu = r.get("server_cpu_us_per_msg")
        ratio = cpu / base if cpu and base else None
        per_conn = r.get("idle_rss_bytes_per_conn")
        missed = []
        if judge and ratio is not None and ratio > IDLE_CPU_RATIO_TARGET:
            missed.append("CPU ratio above target")
        if judge and per_conn is not None and per_conn > IDLE_BYTES_TARGET:
            missed.append("RSS above target")
        rss = (
            f"{r['idle_rss_before'] / 2**20:.1f} → {r['idle_rss_after'] / 2**20:.1f}"
            if r.get("idle_rss_before") is not None
            else "-"
        )
        out.append(
            "| "
            + " | ".join(
                [
                    r["server"],
                    fmt(r.get("idle")),
                    fmt(base, 2),
                    fmt(cpu, 2),
                    fmt(ratio, 2),
                    fmt(per_conn, 0),
                    rss,
                    fmt(r.get("idle_setup_s"), 2),
                    ",".join([status(r)] + missed),
                ]
            )
            + " |"
        )
    return "\n".join(out)


def latency_table(rows: list[dict]) -> str:
    out = [
        "| server | offered msg/s | achieved msg/s | p50 µs | p99 µs | p99.9 µs | server util "
        "| ksoftirqd | others | status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lat = r.get("latency_us") or {}
        out.append(
            "| "
            + " | ".join(
                [
                    r["server"],
                    fmt(r.get("offered_rate")),
                    fmt(r.get("msg_per_s")),
                    fmt(lat.get("50")),
                    fmt(lat.get("99")),
                    fmt(lat.get("99.9")),
                    fmt(r.get("server_util"), 2),
                    fmt(r.get("ksoftirqd_util"), 2),
                    fmt(r.get("others_util"), 2),
                    status(r),
                ]
            )
            + " |"
        )
    return "\n".join(out)


def plot_latency(rows: list[dict], path: str, notes: list[str]):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        notes.append("latency.png not written: matplotlib missing (pip install -r bench/requirements.txt)")
        return
    fig, ax = plt.subplots(figsize=(9, 5.5))
    by_server: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("ok") and r.get("latency_us"):
            by_server.setdefault(r["server"], []).append(r)
    for i, (name, pts) in enumerate(by_server.items()):
        pts.sort(key=lambda r: r["msg_per_s"])
        x = [r["msg_per_s"] for r in pts]
        color = f"C{i}"
        ax.plot(x, [r["latency_us"]["50"] for r in pts], "-o", color=color, label=f"{name} p50")
        ax.plot(x, [r["latency_us"]["99"] for r in pts], "--s", color=color, label=f"{name} p99", alpha=0.8)
        noisy = [r for r in pts if is_noisy(r)]
        for q in ("50", "99"):
            ax.plot(
                [r["msg_per_s"] for r in noisy], [r["latency_us"][q] for r in noisy], "x", color="black", markersize=9
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered ping load, msg/s (open loop)")
    ax.set_ylabel("latency, µs (from intended send time)")
    ax.set_title("WSA ping latency vs offered load (server on 1 core, loopback)")
    ax.grid(True, which="both", alpha=0.3)
    if any(is_noisy(r) for pts in by_server.values() for r in pts):
        ax.plot([], [], "x", color="black", markersize=9, label="noisy: other programs busy")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replot(results_json: str, path: str) -> None:
    """Redraw the latency plot from a results.json."""
    with open(results_json) as f:
        plot_latency(json.load(f)["latency"], path, [])


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a few thousand messages per scenario, no timing judgments; non-zero exit on loss/error",
    )
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per scenario")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    p.add_argument(
        "--servers",
        default=",".join(ALL_SERVERS),
        help=f"comma list of {', '.join((*ALL_SERVERS, *EXTRA_SERVERS))} (default: {', '.join(ALL_SERVERS)})",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(list(SCENARIOS) + ["latency", "fairness"]),
        help=f"comma list of {', '.join(SCENARIOS)}, latency, fairness",
    )
    p.add_argument(
        "--server-cmd", default=DEFAULT_GATEWAY_CMD, help="command of the gateway under test ({port} is replaced)"
    )
    p.add_argument(
        "--gateway",
        action="append",
        default=[],
        metavar="wsa-fast-NAME=CMD",
        help="one more gateway under test, run like wsa-fast ({port} is replaced); repeatable",
    )
    p.add_argument("--lat-duration", type=float, default=2.0, help="measured seconds per latency point")
    p.add_argument(
        "--lat-fractions",
        default=",".join(map(str, LAT_FRACTIONS)),
        help="offered load as fractions of each server's measured ping peak",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="full run: seconds to wait, before each server, for other programs to go quiet",
    )
    p.add_argument("--out", default=os.path.join(HERE, "out"), help="results folder")
    p.add_argument(
        "--plot",
        help="latency plot path (default OUT/latency.png; bench/latency.png is the published one, shown in RESULTS.md)",
    )
    p.add_argument("--replot", metavar="RESULTS_JSON", help="only redraw the latency plot from a results.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    args.plot = args.plot or os.path.join(args.out, "latency.png")
    if args.replot:
        replot(args.replot, args.plot)
        return 0
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: server on core 0, load generator on core 1")
    os.sched_setaffinity(0, {LOADGEN_CORE})  # keep this runner off the server's core
    notes: list[str] = []
    specs = server_specs(args, notes)
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    ensure_built()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in scenarios:
        if s not in SCENARIOS and s not in ("latency", "fairness"):
            raise SystemExit(f"unknown scenario {s!r}")
    if args.smoke:
        base = dict(duration=2.0, warmup=0.0, max_messages=3000, drain=3.0)
        fractions = [0.0]  # one point at a fixed low rate, just to run the mode
    else:
        base = dict(duration=args.duration, warmup=args.warmup, drain=3.0)
        fractions = [float(f) for f in args.lat_fractions.split(",")]
    t_start = time.monotonic()
    rows, lat_rows = [], []
    for name, cmd, is_floor in specs:
        server = Server(name, cmd, is_floor, os.path.join(args.out, "logs"))
        try:
            log(f"== {name}: {' '.join(server.cmd)}")
            # Waits and retries are extras: spend them only while the run is well inside 5 minutes.
            if not args.smoke and time.monotonic() - t_start < EXTRAS_BUDGET_S:
                busy = wait_quiet(NOISY, args.quiet_wait)
                if busy:
                    notes.append(f"{name}: {busy}")
            server.start()
            peak = None
            for sc in scenarios:
                if sc in ("latency", "fairness") or not runs_on(sc, name, is_floor):
                    continue
                opts = {**base, **SCENARIOS[sc], **(SMOKE.get(sc, {}) if args.smoke else {})}
                res = loadgen(server, opts, timeout=budget(opts))
                if is_noisy(res) and res.get("ok") and not args.smoke and time.monotonic() - t_start < EXTRAS_BUDGET_S:
                    # Someone else's build shared the box: once more, keep the quieter run.
                    wait_quiet(NOISY, 5.0)
                    again = loadgen(server, opts, timeout=budget(opts))
                    if not again.get("ok") or (again.get("others_util") or 0) < (res.get("others_util") or 0):
                        res = again
                res.update(server=name, scenario=sc)
                rows.append(res)
                log(
                    f"   {sc:13s} {fmt(res.get('msg_per_s')):>12s} msg/s  "
                    f"{fmt(res.get('server_cpu_us_per_msg'), 2):>6s} µs/msg  {flags(res)} {res.get('error', '')}"
                    + (
                        f" lost={res.get('lost')} dup={res.get('duplicated')} unknown={res.get('unknown')}"
                        f" bad={res.get('bad')} disconnects={res.get('disconnects')} {res.get('bad_samples')}"
                        if not res.get("ok")
                        else ""
                    )
                )
                if sc == "ping" and res.get("ok"):
                    peak = res["msg_per_s"]
                time.sleep(0.3)
            if "latency" in scenarios and name != "floor-single":
                if peak is None and not args.smoke:
                    opts = dict(base, **SCENARIOS["ping"])
                    probe = loadgen(server, opts, timeout=budget(opts))
                    peak = probe.get("msg_per_s") if probe.get("ok") else None
                for f in fractions:
                    # The floor's closed-loop peak is far above what the pacer can offer evenly.
                    rate = 2000.0 if args.smoke else f * min(LAT_MAX_RATE, peak or 0)
                    if rate <= 0:
                        continue
                    # The load generator has core 1 to itself: it may spin to pace within microseconds.
                    opts = dict(
                        mode="latency",
                        conns=8,
                        rate=round(rate),
                        spin=True,
                        duration=0.5 if args.smoke else args.lat_duration,
                        warmup=0.0 if args.smoke else 0.5,
                        drain=3.0,
                    )
                    res = loadgen(server, opts, timeout=budget(opts))
                    res.update(server=name, scenario="latency", fraction=f, peak=peak)
                    lat_rows.append(res)
                    lat = res.get("latency_us") or {}
                    log(
                        f"   latency {fmt(rate):>12s}/s  p50 {fmt(lat.get('50'))} p99 {fmt(lat.get('99'))} "
                        f"p99.9 {fmt(lat.get('99.9'))} µs  {flags(res)} {res.get('error', '')}"
                    )
                    time.sleep(0.3)
        except Exception as e:  # one broken server must not hide the others' numbers
            rows.append({"server": name, "scenario": "(start)", "ok": False, "error": str(e)})
            log(f"   ERROR {e}")
        finally:
            server.stop()
    fair_rows = []
    if "fairness" in scenarios and any(name == "wsa-fast" for name, _, _ in specs):
        fair_rows.append(
            fairness(
                shlex.split(args.server_cmd), os.path.join(args.out, "logs"), 2.0 if args.smoke else FAIRNESS_DURATION
            )
        )
    elapsed = time.monotonic() - t_start

    print("\n## Throughput (closed loop)\n")
    print(throughput_table(rows))
    if any(r["scenario"] == "broadcast-1k" for r in rows):
        print("\n## Broadcast to 1,000 receivers (broadcast-1k; one delivery is one message)\n")
        print(broadcast_table(rows))
    if any(r["scenario"] == "ping-idle-10k" for r in rows):
        print("\n## Idle connections (ping-idle-10k: ping beside 10,000 logged-in silent connections)\n")
        print(idle_table(rows, judge=not args.smoke))
    if lat_rows:
        print("\n## Latency (open loop ping, percentiles from intended send time)\n")
        print(latency_table(lat_rows))
    if fair_rows:
        print("\n## Fairness (one client floods, 100 calm clients ping every 20 ms; default limits)\n")
        print(fairness_table(fair_rows))
    if lat_rows and not args.smoke:
        plot_latency(lat_rows, args.plot, notes)
        notes.append(f"latency plot: {os.path.relpath(args.plot)}")
    for sc, why in GATEWAY_ONLY.items():
        if sc in scenarios:
            notes.append(f"{sc} runs on wsa-fast only ({why}); its CPU/msg ÷ floor is to the floor's ping")
    if args.smoke:
        notes.append("smoke run: a few thousand messages each, so the timing columns mean nothing")
    for n in notes:
        print(f"\nnote: {n}")
    failed = [r for r in rows + lat_rows + fair_rows if not r.get("ok")]
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": elapsed,
        "smoke": args.smoke,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "server_core": SERVER_CORE,
        "loadgen_core": LOADGEN_CORE,
        "server_cmd": args.server_cmd,
        "loadavg_after": open("/proc/loadavg").read().split()[:3],
    }
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump(
            {"meta": meta, "throughput": rows, "latency": lat_rows, "fairness": fair_rows, "notes": notes}, f, indent=1
        )
    print(
        f"\n{len(rows) + len(lat_rows) + len(fair_rows)} runs in {elapsed:.0f}s, {len(failed)} failed; "
        f"results: {os.path.relpath(path)}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
