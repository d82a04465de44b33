"""Gateway settings: defaults < TOML config file < ``WSA_*`` environment < command-line flags."""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = [
    "ConfigError",
    "Settings",
    "load_settings",
    "AUTH_DEV",
    "AUTH_JWT",
    "AUTH_TOKENS_PREFIX",
    "DEFAULT_JWT_ALGORITHMS",
    "DUPLICATE_LOGIN_MODES",
    "ID_STYLES",
    "LIMITS_MODES",
    "LOG_FORMATS",
    "LOG_LEVELS",
]

AUTH_DEV = "dev"
AUTH_JWT = "jwt"
AUTH_TOKENS_PREFIX = "tokens:"
DEFAULT_JWT_ALGORITHMS: tuple[str, ...] = ("HS256", "RS256", "ES256")
DUPLICATE_LOGIN_MODES = ("replace", "reject")
ID_STYLES = ("iso8601", "short")
LIMITS_MODES = ("on", "off")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
MAX_WORKERS = 256
# cluster_name starts every NATS subject, so it must be one subject token.
CLUSTER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

ENV_PREFIX = "WSA_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
# A config file may put its keys at the top level or inside this table.
CONFIG_TABLE = "wsa"


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; ``setting`` names it when one is to blame."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    # "module:attr" naming a wsa_fast.App; None serves the built-in methods only.
    app: str | None = None
    request_timeout: float = 30.0
    # None means "not chosen": resolved_auth() picks dev on loopback and refuses elsewhere.
    auth: str | None = None
    # Kept out of repr so logging the settings never prints the secret.
    jwt_secret: str | None = field(default=None, repr=False)
    # Path to a PEM file holding the RS*/ES* verification key.
    jwt_public_key: str | None = None
    jwt_algorithms: tuple[str, ...] = DEFAULT_JWT_ALGORITHMS
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 0.0
    # The JWT claim listing a client's roles for the access policy (a list, or a space-separated string).
    jwt_roles_claim: str = "roles"
    duplicate_login: str = "replace"
    max_message_size: int = 1048576
    max_bad_messages: int = 20
    id_style: str = "iso8601"
    log_level: str = "info"
    send_buffer_limit: int = 1048576
    # A connection whose unsent output stays over send_buffer_limit this long does not read: cut off.
    slow_consumer_timeout: float = 15.0
    # Unsent bytes past which a connection is cut off at once, however recently it read.
    send_buffer_cap: int = 16777216
    # "off" lifts the per-connection rate limits and max_pending: for benchmarks, not production.
    limits: str = "on"
    # Token buckets per connection, refilled each second, holding a second's worth (0: no such limit).
    rate_limit_messages: float = 1000.0  # requests and events a second (responses are never refused)
    rate_limit_bytes: float = 4194304.0  # their bytes a second; the bucket holds max_message_size at least
    rate_limit_broadcasts: float = 10.0  # broadcasts a second: each costs the gateway one delivery per client
    # Rate-limited messages in a row after which the connection is closed with 1008.
    max_refused_messages: int = 100
    # Relayed requests a client may have waiting for an answer (0: no limit).
    max_pending: int = 1000
    # Open connections per worker, and per client address per worker (0: no limit).
    max_connections: int = 10000
    max_connections_per_ip: int = 1000
    # A fragmented message must be complete this long after its first fragment.
    message_timeout: float = 30.0
    # Bytes all unfinished fragmented messages of a worker may hold.
    max_partial_memory: int = 67108864
    # Ping a connection idle this long (0: never), and close it if no pong comes within ping_timeout.
    ping_interval: float = 25.0
    ping_timeout: float = 10.0
    drain_timeout: float = 10.0
    # Worker processes on this machine, all on one port (SO_REUSEPORT), under a supervisor.
    workers: int = 1
    # NATS server URLs ("nats://host:port,..."): workers on every machine joined to them form
    # one gateway. None: one worker stands alone; several start an embedded nats-server.
    nats: str | None = None
    # Prefix of the NATS subjects: gateways sharing a NATS cluster need different names.
    cluster_name: str = "wsa"
    # PEM certificate chain and private key: both given, the gateway serves wss:// (re-read on SIGHUP).
    tls_cert: str | None = None
    tls_key: str | None = None
    # A port of its own for /metrics, /healthz and /readyz (None: they answer on the public port).
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None
    log_format: str = "text"
    # Origins a browser may open a WebSocket from ("*": any). None: any, warned about off loopback.
    allowed_origins: tuple[str, ...] | None = None
    # PEM file of the CAs that sign the NATS servers' certificates (default: the system's CAs).
    nats_ca_file: str | None = None
    # NATS credentials file (user JWT + NKEY seed, as nsc writes it), or a file holding a user NKEY seed.
    nats_creds_file: str | None = None
    nats_nkey_seed_file: str | None = None
    # The [policy] table (config file only): who may call, message and broadcast what (wsa_fast.policy).
    policy: dict | None = None

    def __post_init__(self) -> None:
        # Normalising in place (env strings -> numbers, int -> float, list -> tuple, INFO -> info)
        # needs object.__setattr__ because the dataclass is frozen.
        for name, (kind, optional) in _field_kinds().items():
            object.__setattr__(self, name, _convert(name, kind, optional, getattr(self, name)))
        object.__setattr__(self, "log_level", self.log_level.lower())
        self._validate()

    def _validate(self) -> None:
        _require(bool(self.host), "host", "host must not be empty")
        _require(0 <= self.port <= 65535, "port", f"port must be between 0 and 65535, got {self.port}")
        if self.app is not None:
            module, _, attr = self.app.partition(":")
            _require(bool(module and attr), "app", f"app must look like 'module:attr', got {self.app!r}")
        _require_positive_time("request_timeout", self.request_timeout)
        _require_positive_time("slow_consumer_timeout", self.slow_consumer_timeout)
        _require_positive_time("drain_timeout", self.drain_timeout, allow_zero=True)
        _require_positive_time("message_timeout", self.message_timeout)
        _require_positive_time("ping_interval", self.ping_interval, allow_zero=True)
        _require_positive_time("ping_timeout", self.ping_timeout)
        _require_choice("limits", self.limits, LIMITS_MODES)
        for name in ("rate_limit_messages", "rate_limit_bytes", "rate_limit_broadcasts"):
            value = getattr(self, name)
            _require(
                value >= 0 and math.isfinite(value),
                name,
                f"{name} must be a finite rate per second, 0 (no limit) or more, got {value}",
            )
        for name in ("max_pending", "max_connections", "max_connections_per_ip"):
            value = getattr(self, name)
            _require(value >= 0, name, f"{name} must be 0 (no limit) or more, got {value}")
        _require_positive_time("jwt_leeway", self.jwt_leeway, allow_zero=True)
        self._validate_auth()
        _require(
            bool(self.jwt_algorithms) and all(self.jwt_algorithms),
            "jwt_algorithms",
            "jwt_algorithms must list at least one algorithm",
        )
        _require_choice("duplicate_login", self.duplicate_login, DUPLICATE_LOGIN_MODES)
        _require_choice("id_style", self.id_style, ID_STYLES)
        _require_choice("log_level", self.log_level, LOG_LEVELS)
        _require_choice("log_format", self.log_format, LOG_FORMATS)
        _require(bool(self.admin_host), "admin_host", "admin_host must not be empty")
        if self.admin_port is not None:
            _require(
                0 <= self.admin_port <= 65535,
                "admin_port",
                f"admin_port must be between 0 and 65535, got {self.admin_port}",
            )
            _require(
                self.admin_port != self.port or self.admin_port == 0 or self.admin_host != self.host,
                "admin_port",
                f"admin_port must differ from port ({self.port})",
            )
        for name in (
            "max_message_size",
            "max_bad_messages",
            "send_buffer_limit",
            "max_refused_messages",
            "max_partial_memory",
        ):
            value = getattr(self, name)
            _require(value >= 1, name, f"{name} must be at least 1, got {value}")
        _require(
            self.send_buffer_cap >= self.send_buffer_limit,
            "send_buffer_cap",
            f"send_buffer_cap must be at least send_buffer_limit ({self.send_buffer_limit}), "
            f"got {self.send_buffer_cap}",
        )
        _require(
            1 <= self.workers <= MAX_WORKERS,
            "workers",
            f"workers must be between 1 and {MAX_WORKERS}, got {self.workers}",
        )
        _require(
            CLUSTER_NAME.fullmatch(self.cluster_name) is not None,
            "cluster_name",
            f"cluster_name must be 1-64 letters, digits, '_' or '-', got {self.cluster_name!r}",
        )
        _require(
            (self.tls_cert is None) == (self.tls_key is None),
            "tls_cert" if self.tls_key else "tls_key",
            "tls_cert and tls_key go together: give both to serve wss://, or neither",
        )
        if self.nats is not None:
            from .nats_client import parse_servers

            try:
                parse_servers(self.nats)
            except ValueError as error:
                raise ConfigError(f"nats: {error}", "nats") from None
        self._validate_nats_security()
        if self.policy is not None:
            from .policy import parse_policy

            parse_policy(self.policy)

    def _validate_nats_security(self) -> None:
        from .nats_client import load_credentials, tls_context

        for name in ("nats_ca_file", "nats_creds_file", "nats_nkey_seed_file"):
            _require(
                getattr(self, name) is None or self.nats is not None,
                name,
                f"{name} needs --nats (the embedded nats-server of --workers N has no TLS or credentials)",
            )
        if self.nats_ca_file is not None:
            try:
                tls_context(self.nats_ca_file)
            except ValueError as error:
                raise ConfigError(f"nats_ca_file: {error}", "nats_ca_file") from None
        try:
            load_credentials(self.nats_creds_file, self.nats_nkey_seed_file)
        except ValueError as error:
            setting = "nats_creds_file" if self.nats_creds_file is not None else "nats_nkey_seed_file"
            raise ConfigError(f"{setting}: {error}", setting) from None

    @property
    def rate_limits_on(self) -> bool:
        """Whether any per-connection rate limit applies."""
        return self.limits == "on" and bool(
            self.rate_limit_messages or self.rate_limit_bytes or self.rate_limit_broadcasts
        )

    def _validate_auth(self) -> None:
        known = self.auth in (None, AUTH_DEV, AUTH_JWT) or self.auth.startswith(AUTH_TOKENS_PREFIX)
        _require(known, "auth", f"auth must be dev, tokens:FILE or jwt, got {self.auth!r}")
        _require(self.tokens_path != "", "auth", "auth tokens: needs a file path, e.g. tokens:/etc/wsa/tokens")
        if self.auth == AUTH_JWT:
            _require(
                self.jwt_secret is not None or self.jwt_public_key is not None,
                "auth",
                "auth jwt needs jwt_secret (HS*) or jwt_public_key (RS*/ES*)",
            )

    @property
    def tokens_path(self) -> str | None:
        """The token file of ``auth = "tokens:PATH"``, else None."""
        if self.auth is None or not self.auth.startswith(AUTH_TOKENS_PREFIX):
            return None
        return self.auth[len(AUTH_TOKENS_PREFIX) :]

    @property
    def scheme(self) -> str:
        """``wss`` when the gateway terminates TLS itself, else ``ws``."""
        return "wss" if self.tls_cert is not None else "ws"

    @property
    def on_loopback(self) -> bool:
        return _is_loopback(self.host)

    def origin_allowed(self, origin: str) -> bool:
        """Whether a browser page from ``origin`` (its Origin header) may open a WebSocket here."""
        if self.allowed_origins is None or "*" in self.allowed_origins:
            return True
        return origin.rstrip("/").lower() in self._allowed_origins

    @functools.cached_property
    def _allowed_origins(self) -> frozenset[str]:
        return frozenset(o.rstrip("/").lower() for o in self.allowed_origins or ())

    def resolved_auth(self) -> str:
        """The auth mode to run: ``auth`` if chosen, else dev on a loopback host (the caller warns)."""
        if self.auth is not None:
            return self.auth
        if _is_loopback(self.host):
            return AUTH_DEV
        raise ConfigError(
            "refusing to start with dev auth on a non-loopback host; pass --auth dev explicitly, or tokens:FILE / jwt",
            "auth",
        )


def load_settings(flags: Mapping[str, object], environ: Mapping[str, str] = os.environ) -> Settings:
    """Merge defaults, the config file (flags["config"] or WSA_CONFIG), WSA_* variables and flags.

    Flags whose value is None were not given and do not override anything.
    """
    kinds = _field_kinds()
    values: dict[str, typing.Any] = {}
    # Where each value came from, so an error names the file, variable or flag to fix.
    origins: dict[str, str] = {}

    config_path = flags.get("config") or environ.get(CONFIG_ENV) or None
    if config_path is not None:
        for name, value in _read_config_file(str(config_path), kinds).items():
            values[name], origins[name] = value, str(config_path)
    for name in kinds:
        variable = ENV_PREFIX + name.upper()
        # An empty variable counts as unset, as container tooling often exports blanks.
        if environ.get(variable):
            values[name], origins[name] = environ[variable], variable
    for name, value in flags.items():
        if name == "config" or value is None:
            continue
        if name not in kinds:
            raise ConfigError(f"unknown setting {name!r}", name)
        values[name], origins[name] = value, "--" + name.replace("_", "-")

    try:
        return Settings(**values)
    except ConfigError as error:
        if error.setting in origins:
            raise ConfigError(f"{origins[error.setting]}: {error}", error.setting) from None
        raise


def _read_config_file(path: str, kinds: Mapping[str, tuple[type, bool]]) -> dict[str, object]:
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None

    table = document.pop(CONFIG_TABLE, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [{CONFIG_TABLE}] must be a table")
    clashes = sorted(table.keys() & document.keys())
    if clashes:
        raise ConfigError(
            f"config file {path}: {clashes[0]!r} is set both at top level and in [{CONFIG_TABLE}]", clashes[0]
        )
    document.update(table)
    for name in document:
        if name not in kinds:
            raise ConfigError(f"config file {path}: unknown key {name!r}", name)
    return document


@functools.cache
def _field_kinds() -> dict[str, tuple[type, bool]]:
    """Each field's base type (str, int, float or tuple) and whether it may be None."""
    hints = typing.get_type_hints(Settings)
    kinds: dict[str, tuple[type, bool]] = {}
    for setting in fields(Settings):
        hint = hints[setting.name]
        args = typing.get_args(hint)
        if type(None) in args:
            (base,) = [arg for arg in args if arg is not type(None)]
            kinds[setting.name] = (typing.get_origin(base) or base, True)
        else:
            kinds[setting.name] = (typing.get_origin(hint) or hint, False)
    return kinds


_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    tuple: "a list of strings",
    dict: "a table in the config file",
}


def _convert(name: str, kind: type, optional: bool, value: object) -> object:
    """Check ``value`` against the field's type, parsing strings (from the environment) on the way."""
    if value is None and optional:
        return value
    # bool is an int subclass, but `port = true` is a mistake, not port 1.
    if isinstance(value, bool):
        pass
    elif kind is str and isinstance(value, str):
        return value
    elif kind is int and isinstance(value, int):
        return value
    elif kind is int and isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    elif kind is float and isinstance(value, (int, float)):
        return float(value)
    elif kind is float and isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    elif kind is tuple and isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    elif kind is tuple and isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    elif kind is dict and isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(f"{name} must be {_KIND_NAMES[kind]}, got {value!r}", name)


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(message, name)


def _require_positive_time(name: str, value: float, allow_zero: bool = False) -> None:
    in_range = (value >= 0 if allow_zero else value > 0) and math.isfinite(value)
    bound = "at least 0" if allow_zero else "greater than 0"
    _require(in_range, name, f"{name} must be a finite number of seconds {bound}, got {value}")


def _require_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, name, f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
