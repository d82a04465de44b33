"""How each simulated client logs in: dev auth (any id), a token per client from a file, or JWTs minted from a secret.

The file and the JWTs are the ones ``wsa-fast serve --auth tokens:FILE`` and ``--auth jwt``
accept (wsa_fast/auth.py): ``TOKEN CLIENT_ID`` lines, and tokens whose ``sub`` is the client id.
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt

from ..grammar import is_client_id

# Minted tokens outlive any run: a run is hours at most.
JWT_LIFETIME_S = 24 * 3600


class CredentialError(ValueError):
    """A credentials problem the user must fix (a usage error)."""


class Credentials:
    """``login(k)``: (client id, login params) for the k-th client of this process."""

    def __init__(self, ids: list[str], tokens: list[str] | None) -> None:
        self.ids = ids
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.ids)

    def login(self, k: int) -> tuple[str, object]:
        if self.tokens is None:
            return self.ids[k], None
        return self.ids[k], {"token": self.tokens[k]}


def dev(names: list[str]) -> Credentials:
    return Credentials(names, None)


def from_token_file(path: str, first: int, count: int) -> Credentials:
    """Lines ``first .. first+count-1`` of a token file (blank lines and ``#`` comments skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CredentialError(f"cannot read token file {path}: {error}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not is_client_id(parts[1]):
            raise CredentialError(f"token file {path}, line {number}: expected 'TOKEN CLIENT_ID'")
        entries.append(parts)
    if len(entries) < first + count:
        raise CredentialError(
            f"token file {path} has {len(entries)} tokens; this run needs {first + count} (one per client)"
        )
    chosen = entries[first : first + count]
    return Credentials([c for _, c in chosen], [t for t, _ in chosen])


def minted(names: list[str], secret: str, algorithm: str = "HS256") -> Credentials:
    """A JWT per client, ``sub`` = its id, signed with ``secret``."""
    expires = int(time.time()) + JWT_LIFETIME_S
    try:
        tokens = [jwt.encode({"sub": n, "exp": expires}, secret, algorithm=algorithm) for n in names]
    except (jwt.PyJWTError, NotImplementedError, ValueError, TypeError) as error:
        raise CredentialError(f"cannot mint {algorithm} tokens with the given secret: {error}") from None
    return Credentials(names, tokens)
