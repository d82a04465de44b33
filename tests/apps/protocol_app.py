"""The app the end-to-end protocol tests serve (``--app tests.apps.protocol_app:app``).

One handler per behaviour of docs/protocol.md section 5: every return shape, sync and
async, WSAError and crashes, event handlers with a visible side effect, and the server
speaking first (``send_request``, ``send_event``, ``broadcast``). ``auth_app`` serves an
asynchronous, slow authenticator for the session tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wsa_fast import App, Context, WSAError
from wsa_fast.auth import Authenticator

# Every question the authorization policy was asked, newest last (bounded).
POLICY_CALLS: list[list[str]] = []
SECRET_DETAIL = "secret-detail-7f3a: must never reach a client"


def policy(sender: str, target: str, kind: str, method: str) -> bool:
    POLICY_CALLS.append([sender, target, kind, method])
    del POLICY_CALLS[:-2000]
    return not method.startswith("forbidden@")


app = App(authorize=policy)


# ---- request handlers: the return shapes, sync and async


@app.request("test@v1/none")
def none_sync(ctx: Context, params: Any) -> None:
    return None


@app.request("test@v1/none_async")
async def none_async(ctx: Context, params: Any) -> None:
    await asyncio.sleep(0.01)
    return None


@app.request("test@v1/receipt")
def receipt_sync(ctx: Context, params: Any) -> str:
    return params["receipt"]


@app.request("test@v1/receipt_async")
async def receipt_async(ctx: Context, params: Any) -> str:
    await asyncio.sleep(0.01)
    return params["receipt"]


@app.request("test@v1/value")
def value_sync(ctx: Context, params: Any) -> Any:
    return params["value"]


@app.request("test@v1/value_async")
async def value_async(ctx: Context, params: Any) -> Any:
    await asyncio.sleep(0.01)
    return params["value"]


@app.request("test@v1/context")
def context(ctx: Context, params: Any) -> dict:
    return {"client_id": ctx.client_id, "id": ctx.id, "method": ctx.method, "params": params}


# ---- request handlers: failures


@app.request("test@v1/raise")
def raise_sync(ctx: Context, params: Any) -> None:
    raise WSAError(params["code"])


@app.request("test@v1/raise_async")
async def raise_async(ctx: Context, params: Any) -> None:
    await asyncio.sleep(0.01)
    raise WSAError(params["code"])


@app.request("test@v1/crash")
def crash_sync(ctx: Context, params: Any) -> None:
    raise ValueError(SECRET_DETAIL)


@app.request("test@v1/crash_async")
async def crash_async(ctx: Context, params: Any) -> None:
    await asyncio.sleep(0.01)
    raise ValueError(SECRET_DETAIL)


@app.request("test@v1/slow")
async def slow(ctx: Context, params: Any) -> str:
    await asyncio.sleep(params["seconds"])
    return "slept"


# ---- the server speaking first


@app.request("test@v1/ask")
async def ask(ctx: Context, params: Any) -> dict:
    """Ask ``target`` ``method`` and report its answer; its fail code (or TIMEOUT/GONE/NOT_FOUND) propagates."""
    answer = await ctx.app.send_request(
        params["target"], params["method"], params.get("params"), timeout=params.get("timeout")
    )
    return {
        "from": answer.from_,
        "to": answer.to,
        "id": answer.id,
        "result": answer.result,
        "receipt": answer.receipt,
        "data": answer.data,
    }


@app.request("test@v1/tell")
def tell(ctx: Context, params: Any) -> None:
    ctx.app.send_event(params["target"], params["method"], params.get("params"))


@app.request("test@v1/broadcast")
def broadcast(ctx: Context, params: Any) -> dict:
    return {"count": ctx.app.broadcast(params["method"], params.get("params"))}


@app.request("test@v1/policy_calls")
def policy_calls(ctx: Context, params: Any) -> list:
    """What the policy was asked about messages from the caller."""
    return [call for call in POLICY_CALLS if call[0] == ctx.client_id]


# ---- event handlers: their only trace is a side effect


@app.event("test@v1/notify")
def notify(ctx: Context, params: Any) -> None:
    ctx.app.send_event(params["tell"], "test@v1/notified", {"by": ctx.client_id, "id": ctx.id, "params": params})


@app.event("test@v1/notify_async")
async def notify_async(ctx: Context, params: Any) -> None:
    await asyncio.sleep(0.01)
    ctx.app.send_event(params["tell"], "test@v1/notified", {"by": ctx.client_id, "id": ctx.id, "params": params})


@app.event("test@v1/shout")
def shout(ctx: Context, params: Any) -> None:
    ctx.app.broadcast("test@v1/shouted", {"by": ctx.client_id, "params": params})


@app.event("test@v1/event_raise")
def event_raise(ctx: Context, params: Any) -> None:
    raise WSAError("EVENT_REFUSED")


@app.event("test@v1/event_crash")
async def event_crash(ctx: Context, params: Any) -> None:
    raise ValueError(SECRET_DETAIL)


# ---- an app with its own, asynchronous and slow, authenticator

LOGIN_DELAY = 0.4
PASSWORD = "open-sesame"


class SlowAuthenticator(Authenticator):
    """Logs in any requested id given the password, after a delay; cannot check handshake tokens."""

    async def login(self, requested_id: str, params: object) -> str | None:
        await asyncio.sleep(LOGIN_DELAY)
        if params == {"password": PASSWORD} and requested_id:
            return requested_id
        return None

    async def token(self, token: str) -> str | None:
        return None


auth_app = App(authenticator=SlowAuthenticator())


@auth_app.request("test@v1/none")
def auth_none(ctx: Context, params: Any) -> None:
    return None
