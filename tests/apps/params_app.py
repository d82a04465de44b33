"""Sync handlers that return their params, untouched or changed, and keep their Context:
``--app tests.apps.params_app:app`` (cwd = repo root). For tests/test_e2e_sync_handlers.py."""

from __future__ import annotations

import time
from typing import Any

from wsa_fast import App, Context

app = App()
kept: list[Context] = []


@app.request("params@v1/echo")
def echo(ctx: Context, params: Any) -> Any:
    return params


@app.request("params@v1/change")
def change(ctx: Context, params: Any) -> Any:
    """Change the params as ``params["how"]`` says, then return them (the same object)."""
    how = params["how"]
    if how == "set":
        params["n"] = 2
    elif how == "same value":
        params["how"] = "same value"  # an equal str, another object: still a change of the dict
    elif how == "delete":
        del params["n"]
    elif how == "add and remove":
        params["extra"] = 1
        del params["extra"]
    elif how == "nested":
        params["inner"]["k"] = "changed"
    elif how == "nested deep":
        params["inner"]["deeper"]["k"] = [1, 2]
    elif how == "list":
        params["list"].append(3)
    elif how == "replace nested":
        params["inner"] = {"k": "new"}
    elif how == "pop and put back":
        params["n"] = params.pop("n")  # same content, moved last: the order changes
    return params


@app.request("params@v1/look")
def look(ctx: Context, params: Any) -> Any:
    """What the handler sees: a real dict or list, its type and its items."""
    return {"type": type(params).__name__, "items": params, "keys": list(params) if isinstance(params, dict) else None}


@app.request("params@v1/keep")
def keep(ctx: Context, params: Any) -> Any:
    """Keep this call's Context; answer what every kept one says now (each must still describe its own call)."""
    kept.append(ctx)
    return [[k.id, k.method, k.client_id] for k in kept]


@app.request("params@v1/id")
def context_id(ctx: Context, params: Any) -> Any:
    return {"id": ctx.id, "again": ctx.id is ctx.id, "repr": repr(ctx), "method": ctx.method}


@app.request("params@v1/crash")
def crash(ctx: Context, params: Any) -> Any:
    raise ValueError(f"crashed on {params['n']}")


@app.request("params@v1/sleep")
def sleep(ctx: Context, params: Any) -> None:
    time.sleep(params["seconds"])


kept_params: list[Any] = []


@app.request("params@v1/keep_params")
def keep_params(ctx: Context, params: Any) -> Any:
    """Keep these params; answer every kept one as it is now (each must still be what its call sent)."""
    kept_params.append(params)
    return kept_params


@app.request("params@v1/spoil")
def spoil(ctx: Context, params: Any) -> Any:
    """Answer what came, then spoil every value of the params: the next call's params must not show it."""
    seen = dict(params)
    for key in params:
        params[key] = "spoiled"
    return seen


@app.request("params@v1/rekey")
def rekey(ctx: Context, params: Any) -> Any:
    """Answer the keys the params came with, then give them the keys of ``params["then"]`` (and a lone
    surrogate for ``"odd"``): nobody keeps them, so the next call's params may be read into this dict."""
    seen = list(params)
    then = dict(params.get("then", {}))
    if params.get("odd"):
        then["\ud800"] = 0
    params.clear()
    params.update(then)
    return seen
