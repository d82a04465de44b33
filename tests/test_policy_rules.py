"""The [policy] table: its errors at start-up, and the compiled check held to the plain-Python rule."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsa_fast._policy import Policy
from wsa_fast.config import ConfigError, Settings
from wsa_fast.policy import KINDS, parse_policy

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

DEPLOY_MD = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"


@pytest.mark.parametrize(
    "table, message",
    [
        ([], "must be a table"),
        ({"rules": []}, "unknown key 'rules'"),
        ({"allow": {"who": ["*"]}}, "list of tables"),
        ({"allow": [{"who": ["*"], "call": ["a"], "wat": 1}]}, "unknown key 'wat'"),
        ({"allow": [{"call": ["a"]}]}, "who must be a non-empty list"),
        ({"allow": [{"who": ["*"]}]}, "allows nothing"),
        ({"allow": [{"who": ["*"], "call": []}]}, "call must be a non-empty list"),
        ({"allow": [{"who": ["*"], "call": ["a*b"]}]}, "may only end a pattern"),
        ({"allow": [{"who": ["ops-*"], "call": ["a"]}]}, "not id patterns"),
        ({"allow": [{"who": ["role:"], "call": ["a"]}]}, "needs a role name"),
        ({"allow": [{"who": ["server"], "call": ["a"]}]}, "not a client id"),
        ({"allow": [{"who": ["*"], "call": ["a"], "to": ["x"]}]}, "'to' only applies with 'message'"),
        ({"allow": [{"who": [f"id{i}" for i in range(64)], "call": ["a"]}]}, "at most 63"),
    ],
)
def test_a_bad_policy_is_refused_with_the_rule_named(table: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(policy=table)


def test_the_policy_is_a_config_file_table_only() -> None:
    with pytest.raises(ConfigError, match="policy must be a table in the config file"):
        Settings(policy="who=*")


def test_no_policy_allows_everything_with_one_and() -> None:
    policy = Policy(None)
    assert list(policy.all_of) == [2**64 - 1] * 3
    assert policy.principals_of("anyone", ["any"]) == 1
    assert all(policy.permits(kind, 1, "x@v1/y", "z") for kind in KINDS)


def test_everything_of_a_kind_costs_no_lookup() -> None:
    rules = parse_policy(
        {
            "allow": [
                {"who": ["role:admin"], "message": ["*"]},
                {"who": ["*"], "message": ["chat@v1/*"], "to": ["support-*"]},
            ]
        }
    )
    policy = Policy(rules)
    admin = policy.principals_of("a", ["admin"])
    assert admin & policy.all_of[1] and not 1 & policy.all_of[1]
    assert policy.all_of[0] == policy.all_of[2] == 2**64 - 1  # call and broadcast: open


NAMES = ["alice", "bob", "role:agent", "role:ops", "*"]
PATTERNS = ["*", "chat@v1/*", "chat@v1/say", "admin@v1/*", "a", "support-*", "bob"]
VALUES = ["chat@v1/say", "chat@v1/", "chat@v1", "admin@v1/x", "a", "ab", "", "support-1", "bob", "support"]


@st.composite
def rule_tables(draw: st.DrawFn) -> dict:
    rules = []
    for _ in range(draw(st.integers(0, 4))):
        rule = {"who": draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))}
        for kind in draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True)):
            rule[kind] = draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3))
        if "message" in rule and draw(st.booleans()):
            rule["to"] = draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2))
        rules.append(rule)
    return {"allow": rules}


@pytest.mark.slow  # Hypothesis over every rule shape
@settings(max_examples=300, deadline=None)
@given(
    table=rule_tables(),
    client=st.sampled_from(["alice", "bob", "carol"]),
    roles=st.frozensets(st.sampled_from(["agent", "ops", "other"])),
    kind=st.sampled_from(KINDS),
    method=st.sampled_from(VALUES),
    target=st.sampled_from(VALUES),
)
def test_the_compiled_check_agrees_with_the_rule(
    table: dict, client: str, roles: frozenset, kind: str, method: str, target: str
) -> None:
    rules = parse_policy(table)
    policy = Policy(rules)
    expected = rules.allows(kind, client, roles, method, target if kind == "message" else "")
    assert policy.permits(kind, policy.principals_of(client, roles), method, target) == expected


def test_the_production_policy_of_deploy_md_lets_only_its_role_broadcast() -> None:
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", DEPLOY_MD.read_text(), re.S) if "[[policy.allow]]" in b]
    document = tomllib.loads(block)
    settings = Settings(**document)
    rules = parse_policy(settings.policy)
    assert settings.jwt_roles_claim == "roles"
    everyone = (
        ("ann", frozenset({"announcer"})),
        ("sue", frozenset({"support"})),
        ("ops-console", frozenset()),
        ("joe", frozenset()),
    )
    assert [rules.allows("broadcast", who, roles, "news@v1/today") for who, roles in everyone] == [
        True,
        False,
        False,
        False,
    ]
    assert not rules.allows("broadcast", "ann", frozenset({"announcer"}), "chat@v1/all")
    assert rules.allows("message", "joe", frozenset(), "chat@v1/say", "support-7")
    assert not rules.allows("message", "joe", frozenset(), "chat@v1/say", "sue")
    assert rules.allows("message", "ops-console", frozenset(), "admin@v1/kick", "joe")
