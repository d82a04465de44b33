"""What the production surface costs, in one run: wss:// against ws://, and metrics against none.

    python bench/run_production.py                                  # TLS only
    python bench/run_production.py --baseline /tmp/nometrics/.venv/bin/wsa-fast   # and metrics

TLS: one gateway serving ws:// and one serving wss:// (an ECDSA P-256 certificate from a CA made
here), each pinned to core 0 with `wsa-fast bench` on core 1: new connections per second (the
`connect` scenario: TCP, TLS handshake, upgrade, login) and relay throughput, with the server's
CPU per connection or message. Metrics: the same gateway as built before metrics were added
(`--baseline`, a `wsa-fast` installed from that commit) against this one, ping and relay.
Variants alternate within each round, so drift on the shared machine hits both alike; the
table shows the median of the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from run import SERVER_CORE, WSA_FAST, Server, drive, pin  # noqa: E402
from tls_ca import TestCA  # noqa: E402

GATEWAY = "{wsa_fast} serve --host 127.0.0.1 --port {{port}} --app bench.bench_app:app"
SCENARIOS = {
    "connect": dict(mode="connect", conns=400, window=16),
    "ping": dict(mode="ping", conns=8, window=64),
    "relay": dict(mode="relay", conns=8, window=64),
}


def measure(
    name: str, cmd: list[str], scenario: str, duration: float, url_scheme: str, ca: str | None, logdir: str
) -> dict:
    server = Server(name.replace("://", "").replace(" ", "-"), cmd, False, logdir)
    server.start()
    try:
        opts = dict(SCENARIOS[scenario], duration=duration)
        extra = ["--server-pid", str(server.proc.pid), "--server-core", str(SERVER_CORE)]
        if ca is not None:
            extra += ["--ca-file", ca]
        return drive(f"{url_scheme}://127.0.0.1:{server.port}/", opts, extra, duration * 6 + 60, preexec_fn=pin(1))
    finally:
        server.stop()


def compare(
    title: str,
    variants: dict[str, tuple[list[str], str, str | None]],
    scenarios: list[str],
    rounds: int,
    duration: float,
    logdir: str,
) -> list[str]:
    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(rounds):
        for scenario in scenarios:
            for name, (cmd, scheme, ca) in variants.items():
                row = measure(name, cmd, scenario, duration, scheme, ca, logdir)
                if not row.get("ok"):
                    raise SystemExit(f"{name} {scenario} failed: {row.get('error') or row}")
                results.setdefault((scenario, name), []).append(row)
                print(
                    f"round {r + 1} {scenario:8s} {name:18s} {row['msg_per_s']:10.0f}/s "
                    f"server {row['server_cpu_us_per_msg']:7.2f} µs",
                    file=sys.stderr,
                    flush=True,
                )
    first = next(iter(variants))
    lines = [
        f"### {title}",
        "",
        "| scenario | variant | per second | server µs each | vs " + first + " (µs) | busy others |",
        "|---|---|---|---|---|---|",
    ]
    for scenario in scenarios:
        base = statistics.median(r["server_cpu_us_per_msg"] for r in results[(scenario, first)])
        for name in variants:
            rows = results[(scenario, name)]
            rate = statistics.median(r["msg_per_s"] for r in rows)
            cpu = statistics.median(r["server_cpu_us_per_msg"] for r in rows)
            others = max(r.get("others_util") or 0 for r in rows)
            lines.append(f"| {scenario} | {name} | {rate:,.0f} | {cpu:.2f} | {cpu / base:.3f} | {others:.2f} |")
    return lines + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--baseline", metavar="WSA_FAST", help="wsa-fast built without metrics")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: the gateway on core 0, the load generator on core 1")
    with tempfile.TemporaryDirectory(prefix="wsa-production-") as tmp:
        ca = TestCA(Path(tmp))
        issued = ca.issue("gateway")
        plain = GATEWAY.format(wsa_fast=WSA_FAST).split()
        tls = plain + ["--tls-cert", str(issued.cert), "--tls-key", str(issued.key)]
        out = compare(
            "wss:// against ws:// (this build)",
            {"ws://": (plain, "ws", None), "wss://": (tls, "wss", str(ca.path))},
            ["connect", "relay"],
            args.rounds,
            args.duration,
            tmp,
        )
        if args.baseline:
            before = GATEWAY.format(wsa_fast=args.baseline).split()
            out += compare(
                "metrics against none (ws://)",
                {"without metrics": (before, "ws", None), "with metrics": (plain, "ws", None)},
                ["ping", "relay"],
                args.rounds,
                args.duration,
                tmp,
            )
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
