"""Async handlers as users write them (``--app tests.apps.async_app:app``, tests/test_e2e_async_handlers.py).

Each shape comes in three flavours that take different paths through the gateway: ``now`` returns
without ever suspending, ``yield`` suspends once (``asyncio.sleep(0)``), ``future`` waits for a
future another callback resolves. Then what a handler relies on inside its task (current_task,
asyncio.timeout, TaskGroup, contextvars), sync handlers returning awaitables, and a handler that
waits until the worker stops.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
from typing import Any

from wsa_fast import App, Context, WSAError

app = App()
log = logging.getLogger("tests.async_app")

# Set by one handler, read by another: each call runs in its own copy of the context.
SEEN = contextvars.ContextVar("SEEN", default="unset")


async def pause(how: str) -> None:
    if how == "yield":
        await asyncio.sleep(0)
    elif how == "future":
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, None)
        await future


def register(how: str) -> None:
    @app.request(f"async@v1/value_{how}")
    async def value(ctx: Context, params: Any) -> Any:
        await pause(how)
        return params["value"]

    @app.request(f"async@v1/params_{how}")
    async def echo_params(ctx: Context, params: Any) -> Any:
        await pause(how)
        return {"params": params}

    @app.request(f"async@v1/raise_{how}")
    async def raise_(ctx: Context, params: Any) -> None:
        await pause(how)
        raise WSAError(params["code"])

    @app.request(f"async@v1/crash_{how}")
    async def crash(ctx: Context, params: Any) -> None:
        await pause(how)
        raise ValueError("crash in an async handler")

    @app.event(f"async@v1/notify_{how}")
    async def notify(ctx: Context, params: Any) -> None:
        await pause(how)
        ctx.app.send_event(ctx.client_id, "async@v1/notified", {"id": ctx.id, "how": how})


for _how in ("now", "yield", "future"):
    register(_how)


@app.request("async@v1/context")
async def context(ctx: Context, params: Any) -> dict:
    """What the handler sees of itself before and after suspending."""
    task = asyncio.current_task()
    before = {"task": task is not None, "name": task.get_name() if task else None}
    set_to = params["set"]
    seen_first = SEEN.get()
    SEEN.set(set_to)
    async with asyncio.timeout(5):
        await asyncio.sleep(0)
    async with asyncio.TaskGroup() as group:
        child = group.create_task(asyncio.sleep(0, result="child"))
    return {
        "before": before,
        "same_task_after": asyncio.current_task() is task,
        "stack_has_handler": "context" in [frame.f_code.co_name for frame in task.get_stack()] if task else False,
        "repr_names_handler": "context" in repr(task),
        "seen_first": seen_first,
        "seen_after": SEEN.get(),
        "child": child.result(),
        "id": ctx.id,
        "client_id": ctx.client_id,
        "method": ctx.method,
    }


@app.request("async@v1/timeout")
async def timeout(ctx: Context, params: Any) -> str:
    """asyncio.timeout cancelling the handler's own wait, the handler answering anyway."""
    try:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(30)
    except TimeoutError:
        return "timed out"
    return "not timed out"


@app.request("async@v1/wait_forever")
async def wait_forever(ctx: Context, params: Any) -> str:
    """Waits until the worker stops; says so when cancelled."""
    log.warning("waiting forever for %s", ctx.id)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        log.warning("cancelled while waiting for %s", ctx.id)
        raise
    return "woken"


# ---- sync handlers returning awaitables: each is awaited, its value answered


class Later:
    """An awaitable that is neither a coroutine nor a future."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self):
        yield from asyncio.sleep(0).__await__()
        return self.value


@types.coroutine
def generator_coroutine(value: Any):
    yield from asyncio.sleep(0).__await__()
    return value


@app.request("async@v1/returns_future")
def returns_future(ctx: Context, params: Any) -> Any:
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.set_result, params["value"])
    return future


@app.request("async@v1/returns_awaitable")
def returns_awaitable(ctx: Context, params: Any) -> Any:
    return Later(params["value"])


@app.request("async@v1/returns_generator_coroutine")
def returns_generator_coroutine(ctx: Context, params: Any) -> Any:
    return generator_coroutine(params["value"])


@app.request("async@v1/returns_coroutine")
def returns_coroutine(ctx: Context, params: Any) -> Any:
    async def later() -> Any:
        return params["value"]

    return later()


@app.request("async@v1/returns_failing_future")
def returns_failing_future(ctx: Context, params: Any) -> Any:
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.set_exception, WSAError(params["code"]))
    return future


@app.request("sync@v1/value")
def sync_value(ctx: Context, params: Any) -> Any:
    return params["value"]
