"""The command line of ``wsa-fast bench URL [options]`` and ``wsa-fast bench merge A.json B.json``.

Exit status: 0 when every message was answered once and every --slo was met; 1 when anything
was lost, duplicated, failed or garbled, nothing was answered, an --slo was missed, or the load
could not start; 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..cli import EXIT_USAGE, PROG

SCENARIOS = ("ping", "relay", "broadcast", "call", "connect")
EXIT_FAILED = 1


def add_parser(commands) -> argparse.ArgumentParser:
    """The ``bench`` subcommand, on the ``wsa-fast`` parser's subparsers."""
    p = commands.add_parser(
        "bench",
        help="load-test a WSA server (wsa-fast bench URL ... | wsa-fast bench merge A.json B.json)",
        description="Load-test a WSA server: exact accounting of every message, latency as an HDR histogram. "
        "`wsa-fast bench merge A.json B.json ...` merges --json outputs of runs made at the same time.",
        epilog="Exit status: 0 all answered once and SLOs met; 1 anything lost, duplicated, failed or garbled, "
        "an SLO missed, or the load could not start; 2 usage error.",
    )
    p.add_argument("url", metavar="URL", help="ws://HOST:PORT/PATH or wss://...")
    p.add_argument(
        "--scenario",
        nargs="+",
        default=["ping"],
        metavar="NAME",
        help="ping | relay | broadcast | call METHOD | connect (default ping)",
    )
    p.add_argument("--params", metavar="JSON", help="call: the params of each request (an object or an array)")
    p.add_argument(
        "--expect-fail",
        metavar="CODE",
        help="call: the method answers fail with CODE (a handler raising WSAError): such answers count as answered",
    )
    p.add_argument(
        "--clients",
        type=int,
        default=8,
        metavar="N",
        help="connections: ping/call one sender each; relay N/2 sender->receiver pairs; "
        "broadcast one sender and N-1 receivers; connect N to open and hold (default 8)",
    )
    loop = p.add_mutually_exclusive_group()
    loop.add_argument(
        "--window",
        type=int,
        default=64,
        metavar="K",
        help="closed loop: messages in flight per sender (connect: handshakes at a time) (default 64)",
    )
    loop.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="R",
        help="open loop: messages (connect: connections) per second in total, paced; latency runs "
        "from when each was due, so stalls are not hidden",
    )
    p.add_argument(
        "--spin",
        action="store_true",
        help="open loop: pace within microseconds by keeping a core busy (default: 1 ms ticks, "
        "whose wait counts in the latency)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds of load (connect: seconds to hold the connections) (default 10)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds of load before the measured window (counted, not in throughput/latency)",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds to wait for late answers after the load (default 3)",
    )
    p.add_argument("--max-messages", type=int, default=0, metavar="N", help="stop sending after N messages")
    p.add_argument("--form", choices=("verbose", "compact"), default="verbose", help="wire form (default verbose)")
    p.add_argument(
        "--rx-form",
        choices=("verbose", "compact"),
        help="relay: the receivers' form, when it differs (the gateway re-encodes)",
    )
    p.add_argument(
        "--payload-bytes",
        type=int,
        default=0,
        metavar="B",
        help="pad each message to B bytes of JSON (default: as small as it gets)",
    )
    auth = p.add_mutually_exclusive_group()
    auth.add_argument(
        "--token-file",
        metavar="FILE",
        help="log client k in with line k of FILE ('TOKEN CLIENT_ID' lines, as --auth tokens:FILE)",
    )
    auth.add_argument(
        "--jwt-secret",
        metavar="SECRET",
        help="mint a JWT per client with this HS* secret (prefer $WSA_JWT_SECRET); default: dev auth",
    )
    p.add_argument("--jwt-algorithm", default="HS256", help="algorithm of minted JWTs (default HS256)")
    p.add_argument("--ca-file", metavar="PEM", help="wss://: trust these CA certificates")
    p.add_argument("--insecure", action="store_true", help="wss://: do not verify the server's certificate")
    p.add_argument(
        "--source-address",
        metavar="IP",
        help="connect from this local address: each address has its own ephemeral ports (about 28,000 "
        "per server address with Linux's default range), so a load past that uses several (127.0.0.2, ...)",
    )
    p.add_argument(
        "--procs",
        type=int,
        default=1,
        metavar="N",
        help="load-generating processes; counts and histograms merge exactly (default 1)",
    )
    p.add_argument("--json", metavar="FILE", help="write the full result as JSON (- for stdout)")
    p.add_argument("--plot", metavar="PNG", help="draw latency over time and its distribution (needs matplotlib)")
    p.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="pNN=TIME",
        help="fail (exit 1) unless the latency percentile is within TIME: p99=5ms, p99.9=20ms, max=1s",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    measure = p.add_argument_group("measuring a server on this machine (the bench suite uses these)")
    measure.add_argument(
        "--server-pid", type=int, default=0, metavar="PID", help="report this process tree's CPU per message"
    )
    measure.add_argument(
        "--server-core",
        type=int,
        default=-1,
        metavar="CPU",
        help="with --server-pid: the core it is pinned to, for steal time",
    )
    measure.add_argument(
        "--idle",
        type=int,
        default=0,
        metavar="N",
        help="before the load, log in N more connections that stay silent "
        "(with --server-pid: the server's RSS per idle connection)",
    )
    measure.add_argument(
        "--echo", action="store_true", help="the server echoes each message back (a raw echo floor): check only the id"
    )
    measure.add_argument("--rx-url", metavar="URL", help="relay: receivers connect here (another node)")
    # Internal: one of --procs N processes (procs.py).
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--tag", help=argparse.SUPPRESS)
    return p


def merge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} bench merge",
        description="Merge --json outputs of loads run at the same time (several machines) "
        "into one result: counts add up, histograms merge exactly.",
    )
    p.add_argument("files", nargs="+", metavar="FILE.json")
    p.add_argument("--json", metavar="FILE", help="write the merged result (- for stdout)")
    p.add_argument("--plot", metavar="PNG", help="draw the merged latency (needs matplotlib)")
    p.add_argument("--slo", action="append", default=[], metavar="pNN=TIME", help="as for a run")
    return p


def main(argv: list[str]) -> int:
    """``wsa-fast bench ...`` (argv after ``bench``)."""
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:])
    from ..cli import build_parser
    from . import results
    from .credentials import CredentialError
    from .driver import SetupError
    from .results import ResultError

    args = build_parser().parse_args(["bench", *argv])
    args.argv = list(argv)  # --procs: each process gets the same command line and its part
    try:
        validate(args)
        slos = [results.parse_slo(s) for s in args.slo]
    except ValueError as error:
        return usage_error(error)
    if args.plot:
        try:
            from . import plot  # noqa: F401 (fail now, not after the run)
        except ImportError as error:
            return usage_error(error)
    if args.part:
        from .procs import run_part

        return run_part(args)
    from .procs import run_all

    try:
        result = run_all(args)
    except (CredentialError, ResultError, ValueError) as error:
        return usage_error(error)
    except SetupError as error:
        print(f"{PROG} bench: {error}", file=sys.stderr)
        return EXIT_FAILED
    return finish(result, args.json, args.plot, slos)


def merge_main(argv: list[str]) -> int:
    from . import results

    args = merge_parser().parse_args(argv)
    try:
        slos = [results.parse_slo(s) for s in args.slo]
        merged = results.merge([results.load(f) for f in args.files])
        if args.plot:
            from . import plot  # noqa: F401
    except (ValueError, ImportError) as error:
        return usage_error(error)
    return finish(merged, args.json, args.plot, slos)


def finish(result: dict, json_path: str | None, plot_path: str | None, slos) -> int:
    """Table on stdout (stderr when the JSON goes to stdout), --json, --plot; the exit status."""
    from . import results

    missed = results.check_slos(result, slos)
    result["slo"] = {"given": [f"{n}={v}ns" for n, v in slos], "missed": missed}
    result["summary"] = results.summary(result)
    result["ok"] = not (results.problems(result) or missed)
    from .report import table

    print(table(result, missed), file=sys.stderr if json_path == "-" else sys.stdout)
    if json_path:
        results.dump(result, json_path)
    if plot_path:
        from .plot import draw

        draw(result, plot_path)
        print(f"plot: {plot_path}", file=sys.stderr)
    return 0 if result["ok"] else EXIT_FAILED


def validate(a) -> None:
    """Usage errors, as ValueError (argparse already checked types and choices)."""
    name, *rest = a.scenario
    if name not in SCENARIOS:
        raise ValueError(f"--scenario {name!r}: choose from {', '.join(SCENARIOS)}")
    if name == "call":
        if len(rest) != 1:
            raise ValueError("--scenario call needs the method: --scenario call service@v1/method")
        from ..grammar import is_method

        if not is_method(rest[0]):
            raise ValueError(f"--scenario call {rest[0]!r}: not a method name (service@vN/endpoint)")
    elif rest:
        raise ValueError(f"--scenario {name} takes no argument (got {' '.join(rest)})")
    if a.expect_fail is not None:
        from ..grammar import is_code

        if name != "call":
            raise ValueError("--expect-fail is for call")
        if not is_code(a.expect_fail):
            raise ValueError(f"--expect-fail {a.expect_fail!r}: not a fail code ([A-Z][A-Z0-9_]*)")
    a.scenario, a.method = name, (rest[0] if rest else None)
    a.params = json.loads(a.params) if a.params else None
    if a.params is not None and not isinstance(a.params, (dict, list)):
        raise ValueError("--params must be a JSON object or array")
    if not a.url.startswith(("ws://", "wss://")) or (a.rx_url and not a.rx_url.startswith(("ws://", "wss://"))):
        raise ValueError(f"URL {a.url!r}: expected ws://HOST:PORT/ or wss://HOST:PORT/")
    minimum = {"relay": 2, "broadcast": 2}.get(name, 1)
    if a.clients < minimum:
        raise ValueError(f"--clients {a.clients}: {name} needs at least {minimum}")
    if name == "relay" and a.clients % 2:
        raise ValueError(f"--clients {a.clients}: relay pairs clients, give an even number")
    if name == "broadcast" and a.clients - 1 > 0xFFFF:
        raise ValueError("--clients: broadcast counts at most 65535 receivers per message")
    if a.procs < 1 or a.procs > max(1, a.clients // (2 if name == "relay" else 1)):
        raise ValueError(f"--procs {a.procs}: between 1 and the number of {'pairs' if name == 'relay' else 'clients'}")
    if name == "broadcast" and a.procs > 1:
        raise ValueError("--procs: broadcast runs in one process (receivers check deliveries against the sender)")
    if a.window < 1 or a.rate < 0 or a.duration <= 0 or a.warmup < 0 or a.drain < 0 or a.payload_bytes < 0:
        raise ValueError("--window must be >= 1; --rate, --warmup, --drain, --payload-bytes >= 0; --duration > 0")
    if a.idle and name in ("broadcast", "connect"):
        raise ValueError(f"--idle with {name}: idle connections would take part in it")
    if a.rx_form and name != "relay":
        raise ValueError("--rx-form is for relay")
    if a.jwt_secret is None and not a.token_file and os.environ.get("WSA_JWT_SECRET"):
        a.jwt_secret = os.environ["WSA_JWT_SECRET"]
    if a.spin and not a.rate:
        raise ValueError("--spin paces the open loop: give --rate too")
    if a.echo and name != "ping":
        raise ValueError("--echo is for ping against an echo server")


def usage_error(error: Exception) -> int:
    print(f"{PROG} bench: error: {error}", file=sys.stderr)
    return EXIT_USAGE
