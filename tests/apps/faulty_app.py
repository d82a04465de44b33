"""An app whose own code raises at every place the gateway calls it (``--app tests.apps.faulty_app:app``).

The policy raises for methods under ``crash@``, the on_join hook for ids starting
``joincrash``, the on_leave hook for ids starting ``leavecrash``, the authenticator for the
id ``authcrash``; handlers return values that cannot be encoded or raise while being awaited.
Every one must end as fail INTERNAL_ERROR (or, where nobody waits, one logged error).
"""

from __future__ import annotations

import asyncio
from typing import Any

from wsa_fast import App, Context
from wsa_fast.auth import DevAuthenticator

SECRET = "faulty-app-secret: must never reach a client"


def policy(sender: str, target: str, kind: str, method: str) -> bool:
    if method.startswith("crash@"):
        raise RuntimeError(SECRET)
    return True


class CrashingAuthenticator(DevAuthenticator):
    """Dev auth, except that logging in as ``authcrash`` raises."""

    def login(self, requested_id: str, params: object) -> Any:
        if requested_id == "authcrash":
            raise RuntimeError(SECRET)
        return super().login(requested_id, params)


app = App(authorize=policy, authenticator=CrashingAuthenticator())


@app.on_join
def joined(client_id: str) -> None:
    if client_id.startswith("joincrash"):
        raise RuntimeError(SECRET)


@app.on_leave
def left(client_id: str) -> None:
    if client_id.startswith("leavecrash"):
        raise RuntimeError(SECRET)


@app.request("faulty@v1/connected")
def connected(ctx: Context, params: Any) -> bool:
    return ctx.app.gateway.is_connected(params["target"])


@app.request("faulty@v1/too_deep")
def too_deep(ctx: Context, params: Any) -> Any:
    """A value nested past any encoder's recursion limit."""
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    return value


# Values no JSON encoder takes (NaN and infinities are not JSON: the oracle's json.dumps refuses them).
UNENCODABLE = {
    "set": lambda: {1, 2},
    "object": object,
    "bytes": lambda: b"raw",
    "nan": lambda: float("nan"),
    "inf": lambda: {"x": [float("-inf")]},
}


@app.request("faulty@v1/unencodable")
def unencodable(ctx: Context, params: Any) -> Any:
    return UNENCODABLE[params["kind"]]()


@app.request("faulty@v1/too_deep_async")
async def too_deep_async(ctx: Context, params: Any) -> Any:
    await asyncio.sleep(0)
    return too_deep(ctx, params)
