"""Message ids the server generates, in the style ``id_style`` names (profile section 3)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable

__all__ = ["id_factory"]

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_SHORT_SPACE = 36**5


def _iso8601() -> Callable[[], str]:
    """UTC timestamps with nanoseconds, strictly increasing within the process."""
    last = 0

    def new_id() -> str:
        nonlocal last
        now = max(time.time_ns(), last + 1)
        last = now
        seconds, nanos = divmod(now, 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"

    return new_id


def _short() -> Callable[[], str]:
    """[a-z0-9]{5} from a counter started at a random point: unique for 36**5 ids in a row."""
    counter = itertools.count(int.from_bytes(os.urandom(4), "big") % _SHORT_SPACE)

    def new_id() -> str:
        n = next(counter) % _SHORT_SPACE
        chars = []
        for _ in range(5):
            n, digit = divmod(n, 36)
            chars.append(_BASE36[digit])
        return "".join(reversed(chars))

    return new_id


def id_factory(style: str) -> Callable[[], str]:
    if style == "iso8601":
        return _iso8601()
    if style == "short":
        return _short()
    raise ValueError(f"unknown id_style {style!r}")
