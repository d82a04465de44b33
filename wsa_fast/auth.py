"""Authenticators: who a connection is, from a login request or a token presented at the upgrade.

Bad credentials are never an exception: every method answers None, which the
gateway turns into ``PERMISSION_DENIED`` (login) or a refused upgrade (token).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from .config import AUTH_DEV, AUTH_JWT, DEFAULT_JWT_ALGORITHMS, ConfigError, Settings
from .grammar import is_client_id

__all__ = [
    "Identity",
    "Authenticator",
    "DevAuthenticator",
    "TokenFileAuthenticator",
    "JWTAuthenticator",
    "make_authenticator",
]


class Identity(str):
    """A client id with the roles the access policy ([policy] in the config) knows it by.

    Authenticators may return one wherever they return a client id.
    """

    roles: frozenset[str]

    def __new__(cls, client_id: str, roles: Iterable[str] = ()) -> Identity:
        identity = super().__new__(cls, client_id)
        identity.roles = frozenset(roles)
        return identity


class Authenticator:
    """Decides which client id a connection may bind; subclass it and pass it to ``App(authenticator=...)``.

    Either method may be a coroutine function. The base class denies everything.
    """

    def login(self, requested_id: str, params: object) -> str | None | Awaitable[str | None]:
        """Answer an ``auth@v1/login`` request.

        ``requested_id`` is the request's ``from`` (``""`` asks for the id the credentials name);
        ``params`` is its params as Python (dict, list or None). Return the id to bind, or None.
        """
        return None

    def token(self, token: str) -> str | None | Awaitable[str | None]:
        """Answer a token presented at the upgrade (``Authorization: Bearer`` or ``?token=``)."""
        return None


class DevAuthenticator(Authenticator):
    """Anyone is whoever they say: for development on loopback only."""

    def login(self, requested_id: str, params: object) -> str | None:
        return requested_id if is_client_id(requested_id) else None

    def token(self, token: str) -> str | None:
        return token if is_client_id(token) else None


class _CredentialAuthenticator(Authenticator):
    """Login by the same credential ``token()`` checks, carried as ``{"token": T}`` or ``[T]``."""

    def login(self, requested_id: str, params: object) -> str | None:
        credential = _credential(params)
        if credential is None:
            return None
        client_id = self.token(credential)
        # A client may name the id it wants, but only the one its credential grants.
        if client_id is None or (requested_id and requested_id != client_id):
            return None
        return client_id

    def token(self, token: str) -> str | None:
        raise NotImplementedError


class TokenFileAuthenticator(_CredentialAuthenticator):
    """Static tokens from a file of ``TOKEN CLIENT_ID [ROLE,ROLE...]`` lines (blank lines, ``#`` comments ignored)."""

    def __init__(self, path: str | Path) -> None:
        # Keyed by the token's digest, so lookup time says nothing about the token's bytes.
        self._entries: dict[bytes, tuple[bytes, Identity]] = {}
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read token file {path}: {error}", "auth") from None
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) not in (2, 3) or not is_client_id(parts[1]):
                raise ConfigError(f"token file {path}, line {number}: expected 'TOKEN CLIENT_ID [ROLE,...]'", "auth")
            token, client_id = parts[:2]
            roles = [role for role in parts[2].split(",") if role] if len(parts) == 3 else []
            digest = _digest(token)
            if digest in self._entries:
                message = f"token file {path}, line {number}: token already used on an earlier line"
                raise ConfigError(message, "auth")
            self._entries[digest] = (_encode(token), Identity(client_id, roles))

    def token(self, token: str) -> str | None:
        entry = self._entries.get(_digest(token))
        if entry is None:
            return None
        stored, client_id = entry
        return client_id if hmac.compare_digest(stored, _encode(token)) else None


class JWTAuthenticator(_CredentialAuthenticator):
    """JSON Web Tokens: signature and ``exp`` verified, ``sub`` is the client id.

    HS* algorithms verify with ``secret``; RS*/ES* (and other public-key ones) with ``public_key``, a PEM.
    """

    def __init__(
        self,
        secret: str | bytes | None = None,
        public_key: str | bytes | None = None,
        algorithms: Sequence[str] = DEFAULT_JWT_ALGORITHMS,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0,
        roles_claim: str = "roles",
    ) -> None:
        self._roles_claim = roles_claim
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        # One key per algorithm, chosen by the token's header, so an HS token is never checked against the PEM.
        self._keys: dict[str, Any] = {}
        for name in algorithms:
            if name.lower() == "none":
                raise ConfigError("jwt algorithm 'none' would accept unsigned tokens", "jwt_algorithms")
            try:
                algorithm = jwt.get_algorithm_by_name(name)
            except NotImplementedError:
                raise ConfigError(f"unknown or unavailable jwt algorithm {name!r}", "jwt_algorithms") from None
            material = secret if isinstance(algorithm, HMACAlgorithm) else public_key
            if material is None:
                continue
            try:
                self._keys[name] = algorithm.prepare_key(material)
            except (jwt.InvalidKeyError, ValueError, TypeError):
                # The default list names RS256 and ES256; a given PEM fits one family only.
                continue
        if not self._keys:
            raise ConfigError(
                f"none of the jwt algorithms {', '.join(algorithms)} can use the given key: "
                "HS* need jwt_secret, RS*/ES* need jwt_public_key as a matching RSA or EC PEM",
                "jwt_algorithms",
            )

    def token(self, token: str) -> str | None:
        # A JWT is ASCII; anything else cannot verify, and PyJWT would raise UnicodeError on it.
        if not token.isascii():
            return None
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if not isinstance(algorithm, str) or algorithm not in self._keys:
                return None
            key = self._keys[algorithm]
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not is_client_id(subject):
            return None
        # The roles claim: a list of names, or one space-separated string (as OAuth's "scope").
        roles = claims.get(self._roles_claim)
        if isinstance(roles, str):
            roles = roles.split()
        elif not isinstance(roles, list):
            roles = []
        return Identity(subject, [role for role in roles if isinstance(role, str)])


def make_authenticator(settings: Settings) -> Authenticator:
    """Build the authenticator ``settings.resolved_auth()`` names (ConfigError if it cannot)."""
    mode = settings.resolved_auth()
    if mode == AUTH_DEV:
        return DevAuthenticator()
    if mode == AUTH_JWT:
        return JWTAuthenticator(
            secret=settings.jwt_secret,
            public_key=_read_public_key(settings.jwt_public_key),
            algorithms=settings.jwt_algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway,
            roles_claim=settings.jwt_roles_claim,
        )
    if settings.tokens_path is None:
        raise ConfigError(f"unknown auth mode {mode!r}", "auth")
    return TokenFileAuthenticator(settings.tokens_path)


def _credential(params: object) -> str | None:
    """The token in login params ``{"token": T}`` or ``[T]``."""
    if isinstance(params, dict):
        credential = params.get("token")
    elif isinstance(params, list) and len(params) == 1:
        credential = params[0]
    else:
        return None
    return credential if isinstance(credential, str) and credential else None


def _encode(token: str) -> bytes:
    # surrogatepass: a lone surrogate from a lenient JSON decoder must fail to match, not raise.
    return token.encode("utf-8", "surrogatepass")


def _digest(token: str) -> bytes:
    return hashlib.sha256(_encode(token)).digest()


def _read_public_key(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read jwt_public_key {path}: {error.strerror}", "jwt_public_key") from None
