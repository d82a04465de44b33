"""A small app for end-to-end tests: ``--app tests.apps.echo_app:app`` (cwd = repo root)."""

from __future__ import annotations

import asyncio
from typing import Any

from wsa_fast import App, Context, WSAError

app = App()


@app.request("echo@v1/echo")
def echo(ctx: Context, params: Any) -> Any:
    """Answer with the params as data (an empty object when there are none)."""
    return params if params is not None else {}


@app.request("echo@v1/whoami")
def whoami(ctx: Context, params: Any) -> str:
    """Answer with the caller's id as the receipt."""
    return ctx.client_id


@app.request("echo@v1/fail")
async def fail(ctx: Context, params: Any) -> None:
    """Fail with ``params["code"]``."""
    await asyncio.sleep(0)
    raise WSAError(params["code"])


@app.request("echo@v1/ask")
async def ask(ctx: Context, params: Any) -> Any:
    """Ask the caller ``params["method"]`` with ``params["params"]``; answer with its reply."""
    reply = await ctx.app.send_request(
        ctx.client_id, params["method"], params.get("params"), timeout=params.get("timeout")
    )
    return {"from": reply.from_, "receipt": reply.receipt, "data": reply.data}


@app.request("echo@v1/broadcast")
def broadcast(ctx: Context, params: Any) -> Any:
    """Broadcast ``params["method"]`` with ``params["params"]`` from the server; answer with the count."""
    return {"sent": ctx.app.broadcast(params["method"], params.get("params"))}


@app.request("echo@v1/notify")
def notify(ctx: Context, params: Any) -> None:
    """Send the caller a server event ``params["method"]`` with ``params["params"]``."""
    ctx.app.send_event(ctx.client_id, params["method"], params.get("params"))


@app.event("echo@v1/note")
def note(ctx: Context, params: Any) -> None:
    """Bounce an event back to its sender as ``echo@v1/noted``."""
    ctx.app.send_event(ctx.client_id, "echo@v1/noted", {"from": ctx.client_id, "params": params})
