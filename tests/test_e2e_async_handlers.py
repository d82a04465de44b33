"""End to end: async handlers (``async def``, or a sync handler returning an awaitable) as a user sees them.

Every return shape, params shape and failure, for handlers that never suspend, that suspend once and
that wait on a future; what a handler relies on inside its task (asyncio.current_task, asyncio.timeout,
TaskGroup, contextvars, its task's name and stack); awaitables of every kind returned by sync handlers;
a batch of mixed requests in one write answered exactly once each; and a handler still waiting when
the worker stops being cancelled, with no answer. The app: tests/apps/async_app.py.
"""

from __future__ import annotations

import json
import signal

import pytest
from raw_ws import RawWS, frame
from wsa_ws import Clients, aio, close_code, expect_fail, expect_response, new_id, running_server, settled, uid

APP = "tests.apps.async_app:app"
FLAVOURS = ("now", "yield", "future")
# Integers past 64 bits and floats at the edges come back exact, as from a sync handler.
VALUES = [{"k": [1, "x", None]}, [1, 2, 3], [], {}, 0, -7, 1.5, 1e300, True, False, 2**70, "a receipt ✓", None]


@pytest.fixture(scope="module")
def server():
    # The crash handlers log their tracebacks on purpose.
    with running_server("--app", APP, allow_tracebacks=True) as srv:
        yield srv


def expected(value):
    """How a handler's value is answered: a str is the receipt, None a plain success, the rest data."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {"receipt": value}
    return {"data": value}


@pytest.mark.parametrize("how", FLAVOURS)
@aio
async def test_every_value_is_answered_as_from_a_sync_handler(server, how):
    async with Clients(server) as cl:
        (a,) = await cl.bound("compact")
        for value in VALUES:
            id = await a.request("server", f"async@v1/value_{how}", {"value": value})
            expect_response(await a.recv(), id=id, to=a.cid, **expected(value))
            id = await a.request("server", "sync@v1/value", {"value": value})
            expect_response(await a.recv(), id=id, to=a.cid, **expected(value))
        await settled(a)


# params are an object or an array (or left out: None), holding values of every JSON type.
PARAMS = [
    {"s": "t ✓", "n": 42, "f": -0.5, "t": True, "z": None, "big": -(2**70), "a": [1, {"b": []}]},
    [1, "two", 2.5],
    {},
    [],
    None,
]


@pytest.mark.parametrize("how", FLAVOURS)
@pytest.mark.parametrize("params", PARAMS)
@aio
async def test_params_of_every_type_reach_the_handler(server, how, params):
    async with Clients(server) as cl:
        (a,) = await cl.bound("verbose")
        id = await a.request("server", f"async@v1/params_{how}", *([] if params is None else [params]))
        expect_response(await a.recv(), id=id, to=a.cid, data={"params": params})


@aio
async def test_results_of_any_size_and_shape_are_answered_whole(server):
    # Large enough that the buffer results are encoded in is given back after, then small again;
    # values written by the plain encoder and by the fallback (a big integer), escapes included.
    async with Clients(server) as cl:
        (a,) = await cl.bound("compact")
        for value in (["x" * 100_000, {"k": "é\n\u0001"}], [1, 2], {"t": [1, [2]], "big": 2**70}, ['"quoted"']):
            for method in ("sync@v1/value", "async@v1/value_now"):
                id = await a.request("server", method, {"value": value})
                expect_response(await a.recv(), id=id, to=a.cid, data=value)
        await settled(a)


@pytest.mark.parametrize("how", FLAVOURS)
@aio
async def test_failures_answer_their_code_or_internal_error(server, how):
    async with Clients(server) as cl:
        (a,) = await cl.bound("verbose")
        id = await a.request("server", f"async@v1/raise_{how}", {"code": "CONFLICT"})
        expect_fail(await a.recv(), "CONFLICT", id=id, to=a.cid)
        id = await a.request("server", f"async@v1/crash_{how}")
        expect_fail(await a.recv(), "INTERNAL_ERROR", id=id, to=a.cid)
        await settled(a)
    assert server.wait_for_log("crash in an async handler")


@pytest.mark.parametrize("how", FLAVOURS)
@aio
async def test_an_async_event_handler_runs_and_answers_nothing(server, how):
    async with Clients(server) as cl:
        (a,) = await cl.bound("compact")
        id = await a.event("server", f"async@v1/notify_{how}", {"x": 1})
        got = await a.recv()
        assert got["type"] == "event" and got["payload"]["params"] == {"id": id, "how": how}, got
        await settled(a)
        await a.silent(0.2)


@aio
async def test_a_handler_runs_in_its_own_task_and_context(server):
    async with Clients(server) as cl:
        (a,) = await cl.bound("verbose")
        first = await a.request("server", "async@v1/context", {"set": "first"})
        second = await a.request("server", "async@v1/context", {"set": "second"})
        for id, value in ((first, "first"), (second, "second")):
            reply = await a.recv()
            expect_response(
                reply,
                id=id,
                to=a.cid,
                data={
                    # A task from the first line on, named after the method; the same after suspending.
                    "before": {"task": True, "name": "async@v1/context"},
                    "same_task_after": True,
                    "stack_has_handler": True,
                    "repr_names_handler": True,
                    # The other call's ContextVar.set is not seen here.
                    "seen_first": "unset",
                    "seen_after": value,
                    "child": "child",
                    "id": id,
                    "client_id": a.cid,
                    "method": "async@v1/context",
                },
            )


@aio
async def test_asyncio_timeout_cancels_the_wait_and_the_handler_answers(server):
    async with Clients(server) as cl:
        (a,) = await cl.bound("compact")
        id = await a.request("server", "async@v1/timeout")
        expect_response(await a.recv(), id=id, to=a.cid, receipt="timed out")
        await settled(a)


@pytest.mark.parametrize("kind", ["future", "awaitable", "generator_coroutine", "coroutine"])
@aio
async def test_a_sync_handler_returning_an_awaitable_is_answered_with_its_value(server, kind):
    async with Clients(server) as cl:
        (a,) = await cl.bound("verbose")
        for value in ({"n": [1, 2]}, "receipt", None):
            id = await a.request("server", f"async@v1/returns_{kind}", {"value": value})
            expect_response(await a.recv(), id=id, to=a.cid, **expected(value))
        id = await a.request("server", "async@v1/returns_failing_future", {"code": "NOT_FOUND"})
        expect_fail(await a.recv(), "NOT_FOUND", id=id, to=a.cid)
        await settled(a)


def test_a_batch_of_mixed_requests_in_one_write_gets_exactly_one_answer_each(server):
    with RawWS(server.host, server.port) as ws:
        cid = uid("batch")
        ws.send(frame(json.dumps({"from": cid, "to": "server", "type": "request", "id": new_id(),
                                  "payload": {"method": "auth@v1/login"}}).encode()))  # fmt: skip
        assert json.loads(ws.recv_text())["payload"]["result"] == "success"
        sent = {}
        batch = b""
        for i in range(300):
            method = ["sync@v1/value", "async@v1/value_now", "async@v1/value_yield", "async@v1/value_future",
                      "async@v1/raise_now"][i % 5]  # fmt: skip
            id = new_id()
            sent[id] = (method, i)
            params = {"value": i, "code": "CONFLICT"}
            batch += frame(json.dumps({"from": cid, "to": "server", "type": "request", "id": id,
                                       "payload": {"method": method, "params": params}}).encode())  # fmt: skip
        ws.send(batch)
        answers = {}
        for _ in range(len(sent)):
            reply = json.loads(ws.recv_text())
            assert reply["id"] in sent and reply["id"] not in answers, reply
            answers[reply["id"]] = reply["payload"]
        for id, (method, i) in sent.items():
            if method == "async@v1/raise_now":
                assert answers[id] == {"result": "fail", "code": "CONFLICT"}
            else:
                assert answers[id] == {"result": "success", "data": i}
        # Nothing more: a ping's answer is the next message.
        ping = new_id()
        ws.send(frame(json.dumps({"from": cid, "to": "server", "type": "request", "id": ping,
                                  "payload": {"method": "wsa@v1/ping"}}).encode()))  # fmt: skip
        assert json.loads(ws.recv_text())["id"] == ping


def test_stopping_cancels_a_handler_still_waiting_and_answers_nothing():
    @aio
    async def run(server):
        async with Clients(server) as cl:
            (a,) = await cl.bound("verbose")
            id = await a.request("server", "async@v1/wait_forever")
            await a.ping()  # the handler is waiting
            assert server.wait_for_log(f"waiting forever for {id}")
            server.proc.send_signal(signal.SIGTERM)
            # The drain gives up, clients are closed with 1001 and nothing answers the request.
            code, received = await close_code(a.ws, timeout=15)
            assert code == 1001 and received == [], (code, received)
            return id

    with running_server("--drain-timeout", "0.2", "--app", APP) as server:
        id = run(server)
        assert server.wait(15) == 0
        assert f"cancelled while waiting for {id}" in server.log
