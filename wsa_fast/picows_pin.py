"""The one picows release wsa-fast is built and tested against, checked before any compiled module loads.

The compiled gateway cimports picows's classes (their C layout) and uses some of its private
members (src_cy/wsa_fast/_picows_internals.pxd): another picows release could corrupt memory
rather than fail, so `wsa-fast serve` refuses to start on one.
"""

from __future__ import annotations

import re
from importlib import metadata

__all__ = ["PicowsMismatch", "pinned_picows", "check_picows"]

DIST = "wsa-fast"


class PicowsMismatch(Exception):
    """The installed picows is not the release this wsa-fast was built against."""


def pinned_picows() -> str | None:
    """The exact picows version this installation requires (pyproject.toml pins it), or None if unknown."""
    try:
        requirements = metadata.requires(DIST) or []
    except metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        match = re.fullmatch(r"picows\s*==\s*([^\s;]+)", requirement.split(";")[0].strip())
        if match:
            return match.group(1)
    return None


def check_picows() -> None:
    pinned = pinned_picows()
    try:
        installed = metadata.version("picows")
    except metadata.PackageNotFoundError:
        raise PicowsMismatch(
            "picows is not installed; wsa-fast needs picows" + (f"=={pinned}" if pinned else "")
        ) from None
    if pinned is not None and installed != pinned:
        raise PicowsMismatch(
            f"picows {installed} is installed, but wsa-fast was built and tested against picows "
            f"{pinned} (whose C layout it compiles in): install picows=={pinned}"
        )
