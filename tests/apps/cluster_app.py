"""The app the cluster tests serve (``--app tests.apps.cluster_app:app``).

``cluster@v1/where`` tells which worker process answered, so a test can place its clients
on different workers; the others make the server itself speak to clients that may be on
any worker: ``ask`` (send_request), ``tell`` (send_event) and ``announce`` (broadcast).
"""

from __future__ import annotations

import os
from typing import Any

from wsa_fast import App, Context, WSAError

app = App()


@app.request("cluster@v1/where")
def where(ctx: Context, params: Any) -> dict:
    return {"pid": os.getpid()}


@app.request("cluster@v1/ask")
async def ask(ctx: Context, params: Any) -> dict:
    try:
        response = await ctx.app.send_request(
            params["target"], params["method"], params.get("params"), timeout=params.get("timeout")
        )
    except WSAError as error:
        return {"error": error.code}
    return {"result": response.result, "receipt": response.receipt, "data": response.data}


@app.request("cluster@v1/tell")
def tell(ctx: Context, params: Any) -> None:
    ctx.app.send_event(params["target"], params["method"], params.get("params"))


@app.request("cluster@v1/announce")
def announce(ctx: Context, params: Any) -> int:
    return ctx.app.broadcast(params["method"], params.get("params"))
