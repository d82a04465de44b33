"""The declarative access policy of the ``[policy]`` config table: who may call, message and broadcast what.

::

    [[policy.allow]]
    who = ["role:support", "alice"]     # client ids, "role:NAME" (from the JWT or token file), or "*"
    call = ["tickets@v1/*"]             # server methods: requests and events sent to "server"
    message = ["chat@v1/*"]             # methods of requests and events sent to other clients ...
    to = ["customer-*"]                 # ... whose ids match (default ["*"])
    broadcast = ["news@v1/*"]           # methods of events sent to "client"

A pattern is exact, or ends with ``*`` (a prefix; ``*`` alone matches everything). A kind
(call, message, broadcast) that no rule names stays open to everyone; once a rule names
it, only what some rule allows passes, and the rest fails ``PERMISSION_DENIED``. The
built-in ``wsa@v1/ping`` and ``auth@v1/login`` and all responses are never checked.

This module checks the table and normalises it (``parse_policy``); ``wsa_fast._policy``
compiles the result into bit masks and C pattern tables for the hot path, and
``PolicyRules.allows`` is the plain-Python statement of the same rule, for the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .config import ConfigError
from .grammar import is_client_id

__all__ = ["KINDS", "Rule", "PolicyRules", "parse_policy", "ROLE_PREFIX", "EVERYONE", "MAX_PRINCIPALS"]

KINDS = ("call", "message", "broadcast")
ROLE_PREFIX = "role:"
EVERYONE = "*"
# Who a rule names is a bit in a 64-bit mask per connection; "*" is one of them.
MAX_PRINCIPALS = 64
RULE_KEYS = frozenset({"who", "to", *KINDS})


@dataclass(frozen=True)
class Rule:
    kind: str  # call, message or broadcast
    who: tuple[str, ...]  # client ids, "role:NAME", "*"
    methods: tuple[str, ...]  # patterns
    to: tuple[str, ...]  # target id patterns (message only; ("*",) otherwise)


@dataclass(frozen=True)
class PolicyRules:
    rules: tuple[Rule, ...]

    @property
    def closed_kinds(self) -> frozenset[str]:
        """The kinds some rule names: only what is allowed passes."""
        return frozenset(rule.kind for rule in self.rules)

    def principals(self) -> list[str]:
        """Everyone named, "*" first: bit i of a connection's mask stands for principals()[i]."""
        names = [EVERYONE]
        for rule in self.rules:
            names += [name for name in rule.who if name not in names]
        return names

    def allows(self, kind: str, client_id: str, roles: frozenset[str], method: str, target: str = "") -> bool:
        if kind not in self.closed_kinds:
            return True
        names = {EVERYONE, client_id, *(ROLE_PREFIX + role for role in roles)}
        return any(
            rule.kind == kind
            and names.intersection(rule.who)
            and any(matches(p, method) for p in rule.methods)
            and any(matches(p, target) for p in rule.to)
            for rule in self.rules
        )


def matches(pattern: str, value: str) -> bool:
    return value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern


def parse_policy(table: object) -> PolicyRules:
    """The ``[policy]`` table -> rules; ConfigError naming the faulty entry."""
    if not isinstance(table, Mapping):
        raise ConfigError("policy must be a table with [[policy.allow]] rules", "policy")
    unknown = sorted(set(table) - {"allow"})
    if unknown:
        raise ConfigError(f"policy: unknown key {unknown[0]!r} (expected [[policy.allow]] rules)", "policy")
    entries = table.get("allow", [])
    if not isinstance(entries, list) or not all(isinstance(entry, Mapping) for entry in entries):
        raise ConfigError("policy.allow must be a list of tables ([[policy.allow]])", "policy")
    rules: list[Rule] = []
    for number, entry in enumerate(entries, start=1):
        where = f"policy.allow rule {number}"
        unknown = sorted(set(entry) - RULE_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r} (expected who, call, message, to, broadcast)", "policy"
            )
        who = _strings(entry, "who", where, required=True)
        for name in who:
            if name.startswith(ROLE_PREFIX) and len(name) == len(ROLE_PREFIX):
                raise ConfigError(f"{where}: 'role:' needs a role name", "policy")
            if name.endswith("*") and name != EVERYONE:
                raise ConfigError(f"{where}: who {name!r}: name ids, roles or '*', not id patterns", "policy")
            if name != EVERYONE and not name.startswith(ROLE_PREFIX) and not is_client_id(name):
                raise ConfigError(f"{where}: who {name!r} is not a client id, 'role:NAME' or '*'", "policy")
        to = _strings(entry, "to", where) or (EVERYONE,)
        if "to" in entry and "message" not in entry:
            raise ConfigError(f"{where}: 'to' only applies with 'message'", "policy")
        kinds = [kind for kind in KINDS if kind in entry]
        if not kinds:
            raise ConfigError(f"{where}: allows nothing (give call, message or broadcast)", "policy")
        for kind in kinds:
            methods = _strings(entry, kind, where, required=True)
            rules.append(Rule(kind, who, methods, to if kind == "message" else (EVERYONE,)))
    parsed = PolicyRules(tuple(rules))
    if len(parsed.principals()) > MAX_PRINCIPALS:
        raise ConfigError(
            f"policy names {len(parsed.principals()) - 1} ids and roles; at most "
            f"{MAX_PRINCIPALS - 1} (give the others a role)",
            "policy",
        )
    return parsed


def _strings(entry: Mapping, key: str, where: str, required: bool = False) -> tuple[str, ...]:
    value = entry.get(key)
    if value is None and not required:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise ConfigError(f"{where}: {key} must be a non-empty list of strings", "policy")
    for item in value:
        if "*" in item[:-1]:
            raise ConfigError(f"{where}: {key} pattern {item!r}: '*' may only end a pattern", "policy")
    return tuple(value)
