"""WSAError and the failure codes of profile section 6."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .grammar import is_code

if TYPE_CHECKING:
    from .message import Message

__all__ = ["WSAError", "CODES"]

# The one list of the profile's codes; the engine answers with these (src_cy/wsa_fast/engine/rules.pxi)
# and counts each in its own fails_total slot, in this order.
CODES = (
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "INVALID_MESSAGE",
    "INVALID_TARGET",
    "METHOD_NOT_FOUND",
    "NOT_FOUND",
    "TIMEOUT",
    "GONE",
    "DUPLICATE_ID",
    "RATE_LIMITED",
    "ALREADY_AUTHENTICATED",
    "CONFLICT",
    "UNAVAILABLE",
    "INTERNAL_ERROR",
)


class WSAError(Exception):
    """Raise from a handler to answer with ``fail`` and ``code``; raised by server requests that fail."""

    # The fail response it stands for, when Client.request raised it; None otherwise.
    response: Message | None = None

    def __init__(self, code: str, message: str | None = None) -> None:
        if not is_code(code):
            raise ValueError(f"invalid WSA code {code!r}: expected [A-Z][A-Z0-9_]{{0,63}}")
        super().__init__(message or code)
        self.code = code
