"""Process plumbing shared by the supervisor and the embedded nats-server."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal

__all__ = ["die_with_parent", "describe_exit"]

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def die_with_parent() -> None:
    """In a child: get SIGTERM when the parent dies, even by SIGKILL, so nothing is left orphaned."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def describe_exit(returncode: int) -> str:
    """How a child ended, from its exit code as subprocess gives it (negative: the signal that killed it)."""
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"
