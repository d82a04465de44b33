"""Command line of the load generator (the compiled `loadgen` module cannot run with -m).

Prints one JSON object with the result; exits 1 if anything was lost, duplicated,
unexpected, or nothing was delivered.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/")
    p.add_argument("--mode", required=True,
                   choices=["ping", "handler", "relay", "relay-mixed", "broadcast", "latency"],
                   help="handler: like ping, but logged-in connections call bench@v1/echo (bench_app.py)")
    p.add_argument("--form", choices=["verbose", "compact"], default="verbose",
                   help="form of the connections (relay-mixed: of the senders; receivers are compact)")
    p.add_argument("--conns", type=int, default=8, help="ping, handler: connections; relay: pairs")
    p.add_argument("--window", type=int, default=64, help="closed loop: messages in flight per sender")
    p.add_argument("--receivers", type=int, default=32, help="broadcast: receiving connections")
    p.add_argument("--idle", type=int, default=0,
                   help="before the load, open this many more connections that log in and stay silent, "
                        "and report the server's RSS growth per connection (needs --server-pid)")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    p.add_argument("--drain", type=float, default=3.0, help="seconds to wait for stragglers at the end")
    p.add_argument("--max-messages", type=int, default=0, help="stop sending after this many (0: no cap)")
    p.add_argument("--rate", type=float, default=10000.0, help="latency: offered messages per second")
    p.add_argument("--lat-kind", choices=["ping", "relay", "broadcast"], default="ping",
                   help="latency: which traffic to pace")
    p.add_argument("--expect", choices=["wsa", "echo"], default="wsa",
                   help="echo: the server echoes requests (floor); check only the id")
    p.add_argument("--text", default="hi", help="relay/broadcast: params.text")
    p.add_argument("--rx-url", default="", help="relay: where receivers connect (another node), default --url")
    p.add_argument("--server-pid", type=int, default=0, help="sample this process tree's CPU")
    p.add_argument("--server-core", type=int, default=-1,
                   help="CPU the server is pinned to: report what else ran there (noise) and steal")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    import uvloop

    import loadgen
    res = uvloop.run(loadgen.run(args))
    print(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
