"""The ``wsa-fast`` command: ``wsa-fast serve [options]``, ``wsa-fast bench URL [options]``, ``wsa-fast --version``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from importlib import metadata

from .app import App
from .config import (
    DUPLICATE_LOGIN_MODES,
    ID_STYLES,
    LIMITS_MODES,
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    Settings,
    load_settings,
)
from .picows_pin import PicowsMismatch, check_picows
from .tls import server_context

__all__ = ["main", "build_parser", "load_app"]

PROG = "wsa-fast"
# Exit status for bad usage or configuration, as argparse uses.
EXIT_USAGE = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("wsa_fast.cli")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        try:
            check_picows()  # its compiled module cimports picows too
        except PicowsMismatch as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        # Imported late: the load tester pulls in its compiled module and hdrhistogram.
        from .loadtest.command import main as bench

        return bench(argv[1:])
    args = build_parser().parse_args(argv)
    flags = {name: value for name, value in vars(args).items() if name != "command"}
    try:
        check_picows()  # before anything imports the compiled modules, which cimport picows
        settings = load_settings(flags)
        _configure_logging(settings)
        app = load_app(settings.app) if settings.app is not None else None
        # Read once here so a bad certificate is a start-up error; each worker loads its own.
        server_context(settings)
        _check_auth(settings, app)
        _check_origins(settings)
        # Imported late: the server pulls in the compiled modules, which --help and config errors never need.
        if settings.workers > 1:
            from .supervisor import supervise

            return supervise(settings, app)
        from .server import run

        return run(settings, app)
    except (ConfigError, PicowsMismatch) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # Once serving, SIGINT is a graceful stop (exit 0); this is Ctrl-C before that, e.g. waiting for NATS.
        print(f"{PROG}: error: interrupted while starting", file=sys.stderr)
        return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog=PROG, description="WebSocket gateway for the WSA protocol.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. Later sources win: defaults, --config file, WSA_* variables, flags.",
    )
    # No flag sets a default (argparse gives None), so load_settings can tell given flags from absent ones.
    serve.add_argument("--host", help=f"address to listen on (default {defaults.host})")
    serve.add_argument("--port", type=int, help=f"port to listen on, 0 for any free one (default {defaults.port})")
    serve.add_argument(
        "--app", metavar="MODULE:ATTR", help="the wsa_fast.App to serve (default: built-in methods only)"
    )
    serve.add_argument("--config", metavar="FILE", help="TOML settings file (default: $WSA_CONFIG)")
    serve.add_argument(
        "--request-timeout",
        type=float,
        metavar="SECONDS",
        help=f"how long a relayed request waits (default {defaults.request_timeout:g})",
    )
    serve.add_argument(
        "--auth",
        metavar="dev|tokens:FILE|jwt",
        help="how clients log in (default: dev on a loopback host, required on any other)",
    )
    serve.add_argument(
        "--log-level", type=str.lower, choices=LOG_LEVELS, help=f"logging verbosity (default {defaults.log_level})"
    )
    serve.add_argument(
        "--duplicate-login",
        choices=DUPLICATE_LOGIN_MODES,
        help=f"when an id logs in twice: close the older connection or refuse the newer "
        f"(default {defaults.duplicate_login})",
    )
    serve.add_argument(
        "--max-message-size",
        type=int,
        metavar="BYTES",
        help=f"largest message accepted (default {defaults.max_message_size})",
    )
    serve.add_argument(
        "--max-bad-messages",
        type=int,
        metavar="N",
        help=f"unreadable messages in a row before closing (default {defaults.max_bad_messages})",
    )
    serve.add_argument("--id-style", choices=ID_STYLES, help=f"ids the server generates (default {defaults.id_style})")
    serve.add_argument("--jwt-secret", metavar="SECRET", help="HS* key for --auth jwt (prefer $WSA_JWT_SECRET)")
    serve.add_argument("--jwt-public-key", metavar="PEM_FILE", help="RS*/ES* public key for --auth jwt")
    serve.add_argument(
        "--jwt-roles-claim",
        metavar="CLAIM",
        help=f"JWT claim listing a client's roles for [policy] (default {defaults.jwt_roles_claim})",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        metavar="SECONDS",
        help=f"how long shutdown waits for pending requests (default {defaults.drain_timeout:g})",
    )
    serve.add_argument(
        "--send-buffer-limit",
        type=int,
        metavar="BYTES",
        help=f"unsent bytes a connection may queue (default {defaults.send_buffer_limit})",
    )
    serve.add_argument(
        "--slow-consumer-timeout",
        type=float,
        metavar="SECONDS",
        help=f"how long unsent bytes may stay over --send-buffer-limit before the connection "
        f"is closed (default {defaults.slow_consumer_timeout:g})",
    )
    serve.add_argument(
        "--send-buffer-cap",
        type=int,
        metavar="BYTES",
        help=f"unsent bytes that close a connection at once (default {defaults.send_buffer_cap})",
    )
    serve.add_argument(
        "--limits",
        choices=LIMITS_MODES,
        help="off lifts the rate limits and --max-pending: for benchmarks, never in production "
        f"(default {defaults.limits})",
    )
    serve.add_argument(
        "--rate-limit-messages",
        type=float,
        metavar="PER_SECOND",
        help=f"requests and events a connection may send a second, 0 for no limit "
        f"(default {defaults.rate_limit_messages:g})",
    )
    serve.add_argument(
        "--rate-limit-bytes",
        type=float,
        metavar="PER_SECOND",
        help=f"bytes of them a second, 0 for no limit (default {defaults.rate_limit_bytes:g})",
    )
    serve.add_argument(
        "--rate-limit-broadcasts",
        type=float,
        metavar="PER_SECOND",
        help=f"broadcasts a connection may send a second, 0 for no limit (default {defaults.rate_limit_broadcasts:g})",
    )
    serve.add_argument(
        "--max-refused-messages",
        type=int,
        metavar="N",
        help=f"rate-limited messages in a row before closing with 1008 (default {defaults.max_refused_messages})",
    )
    serve.add_argument(
        "--max-pending",
        type=int,
        metavar="N",
        help=f"relayed requests a client may have unanswered, 0 for no limit (default {defaults.max_pending})",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help=f"connections per worker, 0 for no limit (default {defaults.max_connections})",
    )
    serve.add_argument(
        "--max-connections-per-ip",
        type=int,
        metavar="N",
        help=f"connections per client address per worker, 0 for no limit (default {defaults.max_connections_per_ip})",
    )
    serve.add_argument(
        "--message-timeout",
        type=float,
        metavar="SECONDS",
        help=f"how long a message may take to arrive, first byte to last (default {defaults.message_timeout:g})",
    )
    serve.add_argument(
        "--max-partial-memory",
        type=int,
        metavar="BYTES",
        help=f"bytes all unfinished fragmented messages of a worker may hold (default {defaults.max_partial_memory})",
    )
    serve.add_argument(
        "--ping-interval",
        type=float,
        metavar="SECONDS",
        help=f"ping a connection idle this long, 0 never (default {defaults.ping_interval:g})",
    )
    serve.add_argument(
        "--ping-timeout",
        type=float,
        metavar="SECONDS",
        help=f"close a connection whose pong does not come this soon (default {defaults.ping_timeout:g})",
    )
    serve.add_argument(
        "--workers", type=int, metavar="N", help=f"worker processes sharing the port (default {defaults.workers})"
    )
    serve.add_argument(
        "--nats",
        metavar="nats://HOST:PORT[,...]",
        help="NATS servers joining this node to others as one gateway "
        "(default: none for one worker, an embedded nats-server for several)",
    )
    serve.add_argument(
        "--cluster-name",
        metavar="NAME",
        help=f"NATS subject prefix, one per gateway sharing NATS (default {defaults.cluster_name})",
    )
    serve.add_argument(
        "--tls-cert", metavar="PEM_FILE", help="certificate chain: with --tls-key, serve wss:// (re-read on SIGHUP)"
    )
    serve.add_argument("--tls-key", metavar="PEM_FILE", help="private key of --tls-cert")
    serve.add_argument("--admin-host", metavar="HOST", help=f"address of --admin-port (default {defaults.admin_host})")
    serve.add_argument(
        "--admin-port",
        type=int,
        metavar="PORT",
        help="serve /metrics, /healthz and /readyz on this port instead of the public one",
    )
    serve.add_argument(
        "--log-format", choices=LOG_FORMATS, help=f"text, or json: one object per line (default {defaults.log_format})"
    )
    serve.add_argument(
        "--allowed-origins",
        metavar="ORIGIN[,...]",
        help="origins browsers may connect from, * for any (default: any; warned about off loopback)",
    )
    serve.add_argument(
        "--nats-ca-file",
        metavar="PEM_FILE",
        help="CAs to verify the NATS servers' TLS certificates with (default: the system's)",
    )
    serve.add_argument("--nats-creds-file", metavar="FILE", help="NATS credentials file (user JWT and NKEY seed)")
    serve.add_argument("--nats-nkey-seed-file", metavar="FILE", help="file holding a NATS user NKEY seed")
    from .loadtest.command import add_parser as add_bench

    add_bench(commands)
    return parser


def load_app(spec: str) -> object:
    """Import ``module:attr``, looking in the current directory first as a user running a script expects."""
    module_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        # Only the app's own module being absent is a config error; a missing dependency keeps its traceback.
        if error.name is None or not (module_name + ".").startswith(error.name + "."):
            raise
        message = f"app {spec!r}: no module named {module_name!r} (searched {cwd} and sys.path)"
        raise ConfigError(message, "app") from None
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"app {spec!r}: module {module_name!r} has no attribute {attr!r}", "app") from None
    if not isinstance(app, App):
        raise ConfigError(f"app {spec!r} is not a wsa_fast.App (it is a {type(app).__name__!r})", "app")
    return app


def _check_auth(settings: Settings, app: object) -> None:
    """Refuse implicit dev auth off loopback, and warn about it on loopback, unless the app authenticates."""
    if settings.auth is not None or getattr(app, "authenticator", None) is not None:
        return
    mode = settings.resolved_auth()
    log.warning(
        "no --auth given: using %s auth on loopback host %s; any client may claim any id without credentials",
        mode,
        settings.host,
    )


def _configure_logging(settings: Settings) -> None:
    if settings.log_format == "json":
        from .log_json import JsonFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    else:
        logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)


def _check_origins(settings: Settings) -> None:
    """Browsers send their page's Origin: off loopback, not checking it lets any site use a visitor's login."""
    if settings.allowed_origins is None and not settings.on_loopback:
        log.warning(
            "no allowed_origins set while serving %s: a web page from any site may open WebSockets "
            "here with its visitors' cookies; list your sites' origins (--allowed-origins)",
            settings.host,
        )


def _version() -> str:
    try:
        return metadata.version(PROG)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


if __name__ == "__main__":
    sys.exit(main())
