"""The protocol's own method names (profile section 7), spelled once.

The engine reads them from here when it loads (src_cy/wsa_fast/engine/rules.pxi keeps them as C-level
constants); the client, the app API and the load tester import them.
"""

from __future__ import annotations

__all__ = ["PING", "LOGIN", "ERROR_EVENT", "BUILTIN_METHODS"]

PING = "wsa@v1/ping"
LOGIN = "auth@v1/login"
# The server's event for what cannot be answered with a response (profile section 5).
ERROR_EVENT = "wsa@v1/error"
# Answered by the gateway itself, before any app: an app cannot register them.
BUILTIN_METHODS = frozenset({PING, LOGIN})
