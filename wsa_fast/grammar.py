"""The lexical rules of WSA fields (profile section 3), shared by the pure codec, auth and the client.

The compiled codec checks the same rules in C (``src_cy/wsa_fast/wsa_parse.hpp``);
the property tests hold the two to agreement.
"""

from __future__ import annotations

import re

__all__ = [
    "RESERVED_IDS",
    "is_client_id",
    "is_message_id",
    "is_method",
    "is_code",
    "MAX_CLIENT_ID",
    "MAX_METHOD",
    "MAX_NESTING",
]

MAX_CLIENT_ID = 64
MAX_METHOD = 128
# Deepest nesting accepted inside params/data; deeper input is INVALID_MESSAGE, never a crash.
MAX_NESTING = 128

# Names that mean something in from/to in one form or the other, so never a client id.
RESERVED_IDS = frozenset({"server", "client", "s", "c"})

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
_SHORT_ID = re.compile(r"[a-z0-9]{5}")
_ISO_ID = re.compile(
    r"([0-9]{4})-([0-9][0-9])-([0-9][0-9])T([0-9][0-9]):([0-9][0-9]):([0-9][0-9])(?:\.[0-9]{1,9})?(?:Z|[+-]([0-9][0-9]):([0-9][0-9]))"
)
_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*@v[0-9]+/[A-Za-z0-9_][A-Za-z0-9_./-]*")
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def is_client_id(s: str) -> bool:
    return _CLIENT_ID.fullmatch(s) is not None and s not in RESERVED_IDS


def is_message_id(s: str) -> bool:
    """``[a-z0-9]{5}`` or an ISO 8601 timestamp with an offset (fields range-checked)."""
    if _SHORT_ID.fullmatch(s):
        return True
    m = _ISO_ID.fullmatch(s)
    if m is None:
        return False
    _, month, day, hour, minute, second, oh, om = m.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return False
    if not (int(hour) <= 23 and int(minute) <= 59 and int(second) <= 60):
        return False
    return oh is None or (int(oh) <= 23 and int(om) <= 59)


def is_method(s: str) -> bool:
    return len(s) <= MAX_METHOD and _METHOD.fullmatch(s) is not None


def is_code(s: str) -> bool:
    return _CODE.fullmatch(s) is not None
