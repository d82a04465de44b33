"""The app the network fuzzer serves (``--app tests.apps.fuzz_app:app``): handlers that act mid-batch.

``fuzz@v1/close`` closes the caller's own connection, ``fuzz@v1/close_peer`` another
client's, ``fuzz@v1/broadcast`` (request or event) broadcasts; each has an async twin, so
the act lands in the middle of a read batch or between two.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wsa_fast import App, Context

app = App()


def close_peer_now(ctx: Context, params: Any) -> bool:
    peer = ctx.app.gateway.client(params["peer"]) if isinstance(params, dict) else None
    if peer is None:
        return False
    peer.send_close(1000, "closed by a handler")
    return True


@app.request("fuzz@v1/echo")
def echo(ctx: Context, params: Any) -> Any:
    return params


@app.request("fuzz@v1/close")
def close(ctx: Context, params: Any) -> None:
    ctx.connection.send_close(1000, "closed by a handler")


@app.request("fuzz@v1/close_async")
async def close_async(ctx: Context, params: Any) -> None:
    await asyncio.sleep(0)
    ctx.connection.send_close(1000, "closed by a handler")


@app.request("fuzz@v1/close_peer")
def close_peer(ctx: Context, params: Any) -> bool:
    return close_peer_now(ctx, params)


@app.request("fuzz@v1/close_peer_async")
async def close_peer_async(ctx: Context, params: Any) -> bool:
    await asyncio.sleep(0)
    return close_peer_now(ctx, params)


@app.request("fuzz@v1/broadcast")
def broadcast(ctx: Context, params: Any) -> int:
    return ctx.app.broadcast("fuzz@v1/news", params)


@app.request("fuzz@v1/broadcast_async")
async def broadcast_async(ctx: Context, params: Any) -> int:
    await asyncio.sleep(0)
    return ctx.app.broadcast("fuzz@v1/news", params)


@app.event("fuzz@v1/shout")
def shout(ctx: Context, params: Any) -> None:
    ctx.app.broadcast("fuzz@v1/news", params)
