"""Authenticators: dev rules, the token file and JWT (HS256, RS256, ES256) with real keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wsa_fast.auth import (
    Authenticator,
    DevAuthenticator,
    JWTAuthenticator,
    TokenFileAuthenticator,
    make_authenticator,
)
from wsa_fast.config import ConfigError, Settings

# 32 bytes: RFC 7518 asks HS256 keys to be at least as long as the hash.
SECRET = "0123456789abcdef0123456789abcdef"


def pem(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def claims(sub: str = "alice", lifetime: float = 60, **extra: object) -> dict[str, object]:
    return {"sub": sub, "exp": int(time.time() + lifetime), **extra}


# The base class and dev mode


def test_base_authenticator_denies_everything() -> None:
    base = Authenticator()
    assert base.login("alice", {"token": "x"}) is None
    assert base.token("x") is None


@pytest.mark.parametrize("client_id", ["alice", "a", "user@example.com", "node-1.eu:7", "x" * 64])
def test_dev_accepts_any_valid_id(client_id: str) -> None:
    dev = DevAuthenticator()
    assert dev.login(client_id, None) == client_id
    assert dev.token(client_id) == client_id


@pytest.mark.parametrize("client_id", ["", "server", "client", "s", "c", "x" * 65, "has space", "é"])
def test_dev_refuses_invalid_ids(client_id: str) -> None:
    dev = DevAuthenticator()
    assert dev.login(client_id, {"token": "alice"}) is None
    assert dev.token(client_id) is None


# The token file


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(
        "# token  client id\n\ntok-alice alice\n   tok-bob\tbob   \ntok-alice-2 alice\n",
        encoding="utf-8",
    )
    return path


def test_token_file_login(token_file: Path) -> None:
    tokens = TokenFileAuthenticator(token_file)
    assert tokens.login("", {"token": "tok-alice"}) == "alice"
    assert tokens.login("alice", {"token": "tok-alice"}) == "alice"
    assert tokens.login("", {"token": "tok-alice-2"}) == "alice"
    assert tokens.login("", {"token": "tok-bob"}) == "bob"


def test_token_file_array_params(token_file: Path) -> None:
    tokens = TokenFileAuthenticator(token_file)
    assert tokens.login("", ["tok-bob"]) == "bob"
    assert tokens.login("bob", ["tok-bob"]) == "bob"


def test_token_file_wrong_token(token_file: Path) -> None:
    tokens = TokenFileAuthenticator(token_file)
    assert tokens.login("", {"token": "tok-mallory"}) is None
    assert tokens.login("", {"token": "tok-alic"}) is None
    assert tokens.login("", {"token": "\ud800"}) is None  # a lone surrogate must not raise


def test_token_file_requested_id_must_match(token_file: Path) -> None:
    tokens = TokenFileAuthenticator(token_file)
    assert tokens.login("bob", {"token": "tok-alice"}) is None


@pytest.mark.parametrize(
    "params",
    [None, {}, [], {"token": ""}, {"token": 7}, {"password": "tok-bob"}, ["tok-bob", "tok-alice"], "tok-bob"],
)
def test_token_file_params_without_a_token(token_file: Path, params: object) -> None:
    assert TokenFileAuthenticator(token_file).login("", params) is None


def test_token_file_upgrade_token(token_file: Path) -> None:
    tokens = TokenFileAuthenticator(token_file)
    assert tokens.token("tok-bob") == "bob"
    assert tokens.token("nope") is None


def test_token_file_roles(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("tok-a alice agent,ops\ntok-b bob\n", encoding="utf-8")
    tokens = TokenFileAuthenticator(path)
    alice, bob = tokens.login("", {"token": "tok-a"}), tokens.token("tok-b")
    assert (alice, alice.roles) == ("alice", frozenset({"agent", "ops"}))
    assert (bob, bob.roles) == ("bob", frozenset())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tok alice\njust-one-field\n", "line 2"),
        ("tok alice agent extra\n", "line 1"),
        ("# ok\ntok server\n", "line 2"),
        ("tok alice\ntok bob\n", "line 2: token already used"),
    ],
)
def test_token_file_malformed(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        TokenFileAuthenticator(path)


def test_token_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read token file"):
        TokenFileAuthenticator(tmp_path / "absent")


# JWT


def test_jwt_hs256() -> None:
    auth = JWTAuthenticator(secret=SECRET)
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert auth.login("", {"token": token}) == "alice"
    assert auth.login("alice", [token]) == "alice"
    assert auth.login("bob", {"token": token}) is None
    assert auth.token(token) == "alice"


@pytest.mark.parametrize(
    ("extra", "roles"),
    [
        ({"roles": ["agent", "ops"]}, {"agent", "ops"}),
        ({"roles": "agent ops"}, {"agent", "ops"}),
        ({"roles": ["agent", 7, None]}, {"agent"}),
        ({"roles": {"agent": True}}, set()),
        ({}, set()),
        ({"groups": ["admin"]}, set()),
    ],
)
def test_jwt_roles_claim(extra: dict, roles: set) -> None:
    identity = JWTAuthenticator(secret=SECRET).token(jwt.encode(claims(**extra), SECRET, algorithm="HS256"))
    assert (identity, identity.roles) == ("alice", frozenset(roles))


def test_jwt_roles_claim_is_configurable() -> None:
    token = jwt.encode(claims(groups=["admin"]), SECRET, algorithm="HS256")
    assert JWTAuthenticator(secret=SECRET, roles_claim="groups").token(token).roles == {"admin"}


def test_jwt_rs256(rsa_key: rsa.RSAPrivateKey) -> None:
    auth = JWTAuthenticator(public_key=pem(rsa_key))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert auth.login("", {"token": token}) == "alice"
    assert auth.token(token) == "alice"


def test_jwt_es256(ec_key: ec.EllipticCurvePrivateKey) -> None:
    auth = JWTAuthenticator(public_key=pem(ec_key).decode())
    token = jwt.encode(claims(), ec_key, algorithm="ES256")
    assert auth.login("alice", {"token": token}) == "alice"


def test_jwt_secret_and_public_key_together(ec_key: ec.EllipticCurvePrivateKey) -> None:
    auth = JWTAuthenticator(secret=SECRET, public_key=pem(ec_key))
    assert auth.token(jwt.encode(claims(sub="hs"), SECRET, algorithm="HS256")) == "hs"
    assert auth.token(jwt.encode(claims(sub="es"), ec_key, algorithm="ES256")) == "es"


def test_jwt_expired_is_rejected() -> None:
    auth = JWTAuthenticator(secret=SECRET)
    assert auth.token(jwt.encode(claims(lifetime=-10), SECRET, algorithm="HS256")) is None


def test_jwt_leeway_tolerates_clock_skew() -> None:
    auth = JWTAuthenticator(secret=SECRET, leeway=60)
    assert auth.token(jwt.encode(claims(lifetime=-10), SECRET, algorithm="HS256")) == "alice"


@pytest.mark.parametrize(
    "payload",
    [
        {"exp": int(time.time() + 60)},  # no sub
        {"sub": "alice"},  # no exp
        claims(sub="server"),  # reserved id
        claims(sub="has space"),
        claims(sub=""),
    ],
)
def test_jwt_without_a_valid_subject_or_expiry_is_rejected(payload: dict[str, object]) -> None:
    auth = JWTAuthenticator(secret=SECRET)
    assert auth.token(jwt.encode(payload, SECRET, algorithm="HS256")) is None


def test_jwt_wrong_key_is_rejected(rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey) -> None:
    assert JWTAuthenticator(secret=SECRET).token(jwt.encode(claims(), SECRET[::-1], algorithm="HS256")) is None
    rs = JWTAuthenticator(public_key=pem(rsa_key))
    assert rs.token(jwt.encode(claims(), other_rsa_key, algorithm="RS256")) is None


def test_jwt_algorithm_without_a_key_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    # Only the RSA key is configured, so HS256 and ES256 tokens have nothing to verify against.
    auth = JWTAuthenticator(public_key=pem(rsa_key))
    assert auth.token(jwt.encode(claims(), SECRET, algorithm="HS256")) is None
    assert auth.token(jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")) is None


def test_jwt_not_in_allowed_algorithms_is_rejected() -> None:
    auth = JWTAuthenticator(secret=SECRET, algorithms=["HS256"])
    assert auth.token(jwt.encode(claims(), SECRET + SECRET, algorithm="HS512")) is None


def _forge(header: dict[str, object], payload: dict[str, object], key: bytes) -> str:
    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{segment(json.dumps(header).encode())}.{segment(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{segment(signature)}"


def test_jwt_algorithm_confusion_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    # The classic attack: an HS256 token "signed" with the server's public key as the HMAC secret.
    public = pem(rsa_key)
    auth = JWTAuthenticator(public_key=public)
    assert auth.token(_forge({"alg": "HS256", "typ": "JWT"}, claims(), public)) is None


def test_jwt_unsigned_is_rejected() -> None:
    auth = JWTAuthenticator(secret=SECRET)
    assert auth.token(jwt.encode(claims(), None, algorithm="none")) is None


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "é.é.é", "\ud800"])
def test_jwt_garbage_is_rejected(token: str) -> None:
    assert JWTAuthenticator(secret=SECRET).token(token) is None


def test_jwt_audience_and_issuer() -> None:
    auth = JWTAuthenticator(secret=SECRET, audience="wsa", issuer="https://id.example")
    good = claims(aud="wsa", iss="https://id.example")
    assert auth.token(jwt.encode(good, SECRET, algorithm="HS256")) == "alice"
    assert auth.token(jwt.encode({**good, "aud": "other"}, SECRET, algorithm="HS256")) is None
    assert auth.token(jwt.encode({**good, "iss": "https://evil.example"}, SECRET, algorithm="HS256")) is None
    assert auth.token(jwt.encode(claims(), SECRET, algorithm="HS256")) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": SECRET, "algorithms": ["none"]}, "unsigned"),
        ({"secret": SECRET, "algorithms": ["XX999"]}, "XX999"),
        ({"secret": SECRET, "algorithms": ["RS256"]}, "can use the given key"),
        ({"public_key": b"not a pem"}, "can use the given key"),
    ],
)
def test_jwt_configuration_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        JWTAuthenticator(**kwargs)  # type: ignore[arg-type]


# make_authenticator


def test_make_authenticator_dev() -> None:
    assert isinstance(make_authenticator(Settings()), DevAuthenticator)
    assert isinstance(make_authenticator(Settings(host="0.0.0.0", auth="dev")), DevAuthenticator)
    with pytest.raises(ConfigError, match="non-loopback"):
        make_authenticator(Settings(host="0.0.0.0"))


def test_make_authenticator_tokens(token_file: Path) -> None:
    auth = make_authenticator(Settings(auth=f"tokens:{token_file}"))
    assert isinstance(auth, TokenFileAuthenticator)
    assert auth.token("tok-bob") == "bob"


def test_make_authenticator_jwt_reads_the_public_key(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(pem(ec_key))
    auth = make_authenticator(Settings(auth="jwt", jwt_public_key=str(key_file), jwt_audience="wsa"))
    assert isinstance(auth, JWTAuthenticator)
    assert auth.token(jwt.encode(claims(aud="wsa"), ec_key, algorithm="ES256")) == "alice"


def test_make_authenticator_jwt_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read jwt_public_key"):
        make_authenticator(Settings(auth="jwt", jwt_public_key=str(tmp_path / "absent.pem")))
