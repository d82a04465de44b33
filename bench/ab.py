"""What one feature costs the server per message, measured A/B on a busy machine.

    python bench/ab.py limits --pairs 6                 # every limit on (too high to refuse) vs --limits off
    python bench/ab.py policy --pairs 6                 # bench/policy.toml checked on every relay vs no policy
    python bench/ab.py metrics --pairs 6 --without /tmp/nometrics/.venv/bin/wsa-fast
    python bench/ab.py build --pairs 6 --without BEFORE/wsa-fast --with AFTER/wsa-fast   # two builds

A and B run back to back in each pair, alternating which goes first, with the gateway pinned to
core 0 and `wsa-fast bench` to core 1 (as bench/run.py does). Other programs' load drifts over
minutes on a shared machine; a pair's two runs are seconds apart, so the ratio B/A of the server's
CPU per message within a pair is what drift disturbs least. The table gives the median of the pair
ratios and their spread (lowest, highest), with the load average before and after.
`--without` for metrics: a `wsa-fast` built from this tree with the counters' increments removed
(see bench/RESULTS.md for the exact command), so the only difference is the counting.
`build`: two builds of the gateway (a change that should cost nothing, such as a refactoring):
A is `--without`, B is `--with` (default: this venv's wsa-fast).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Any closed-loop scenario of bench/run.py (handler, handler-async, handler-error among them).
from run import LIMITS_ON_FLAGS, RAW_SPEED_FLAGS, SCENARIOS, SERVER_CORE, WSA_FAST, Server, drive, pin  # noqa: E402


def gateway(wsa_fast: str, *flags: str) -> list[str]:
    """The bench gateway at raw speed (bench/run.py's RAW_SPEED_FLAGS); flags after it win."""
    return [wsa_fast, "serve", "--host", "127.0.0.1", "--port", "{port}", "--app", "bench.bench_app:app",
            *RAW_SPEED_FLAGS, *flags]  # fmt: skip


def variants(
    feature: str, without: str | None, with_: str | None = None
) -> tuple[tuple[str, list[str]], tuple[str, list[str]]]:
    """(A, B) as (name, command): B has the feature, A does not."""
    if feature == "limits":
        return ("--limits off", gateway(WSA_FAST)), ("every limit on", gateway(WSA_FAST, *LIMITS_ON_FLAGS))
    if feature == "policy":
        return ("no policy", gateway(WSA_FAST)), (
            "bench/policy.toml",
            gateway(WSA_FAST, "--config", str(HERE / "policy.toml")),
        )
    if feature == "metrics":
        if not without:
            raise SystemExit("metrics: --without WSA_FAST (a build without the counters) is required")
        return ("without metrics", gateway(without)), ("with metrics", gateway(WSA_FAST))
    if feature == "build":
        if not without:
            raise SystemExit("build: --without WSA_FAST (the build to compare against) is required")
        return ("before", gateway(without)), ("after", gateway(with_ or WSA_FAST))
    raise SystemExit(f"unknown feature {feature}")


def measure(name: str, cmd: list[str], scenario: str, duration: float, warmup: float, logdir: str) -> dict:
    server = Server(name.replace(" ", "-").replace("/", "-"), cmd, False, logdir)
    server.start()
    try:
        opts = dict(SCENARIOS[scenario], duration=duration, warmup=warmup)
        extra = ["--server-pid", str(server.proc.pid), "--server-core", str(SERVER_CORE)]
        row = drive(f"ws://127.0.0.1:{server.port}/", opts, extra, (duration + warmup) * 6 + 60, preexec_fn=pin(1))
    finally:
        server.stop()
    if not row.get("ok"):
        raise SystemExit(f"{name} {scenario} failed: {row.get('error') or row}")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("feature", choices=("limits", "policy", "metrics", "build"))
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--scenarios", default="ping,relay")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    parser.add_argument(
        "--without", metavar="WSA_FAST", help="metrics: wsa-fast built without the counters; build: the A build"
    )
    parser.add_argument("--with", dest="with_", metavar="WSA_FAST", help="build: the B build (default: this venv's)")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: the gateway on core 0, the load generator on core 1")
    (a_name, a_cmd), (b_name, b_cmd) = variants(args.feature, args.without, args.with_)
    scenarios = args.scenarios.split(",")
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows: dict[str, list[tuple[dict, dict]]] = {s: [] for s in scenarios}
    with tempfile.TemporaryDirectory(prefix="wsa-ab-") as logdir:
        for pair in range(args.pairs):
            for scenario in scenarios:
                runs = {}
                order = [(a_name, a_cmd), (b_name, b_cmd)]
                for name, cmd in order if pair % 2 == 0 else order[::-1]:
                    runs[name] = measure(name, cmd, scenario, args.duration, args.warmup, logdir)
                a, b = runs[a_name], runs[b_name]
                rows[scenario].append((a, b))
                print(
                    f"pair {pair + 1} {scenario:6s} {a_name} {a['server_cpu_us_per_msg']:.3f} µs, "
                    f"{b_name} {b['server_cpu_us_per_msg']:.3f} µs, ratio "
                    f"{b['server_cpu_us_per_msg'] / a['server_cpu_us_per_msg']:.3f}",
                    file=sys.stderr,
                    flush=True,
                )
    load_after = os.getloadavg()
    print(f"### {b_name} against {a_name}\n")
    print(
        f"`python bench/ab.py {' '.join(shlex.quote(x) for x in sys.argv[1:])}`, {started}, "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        f"({os.cpu_count()} cores, shared).\n"
    )
    print(
        f"| scenario | pairs | {a_name} µs/msg (median) | {b_name} µs/msg (median) | ratio B/A, median "
        f"| lowest | highest | others (cores, max) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for scenario, pairs in rows.items():
        ratios = [b["server_cpu_us_per_msg"] / a["server_cpu_us_per_msg"] for a, b in pairs]
        a_med = statistics.median(a["server_cpu_us_per_msg"] for a, _ in pairs)
        b_med = statistics.median(b["server_cpu_us_per_msg"] for _, b in pairs)
        others = max(max(a.get("others_util") or 0, b.get("others_util") or 0) for a, b in pairs)
        print(
            f"| {scenario} | {len(pairs)} | {a_med:.3f} | {b_med:.3f} | {statistics.median(ratios):.3f} "
            f"| {min(ratios):.3f} | {max(ratios):.3f} | {others:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
