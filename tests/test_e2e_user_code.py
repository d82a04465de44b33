"""End to end: an app's own code raising, wherever the gateway calls it.

The authorize policy, the authenticator, the on_join and on_leave hooks and a handler whose
value cannot be encoded all raise here (tests/apps/faulty_app.py). Each failure ends as fail
``INTERNAL_ERROR`` to the request that caused it (or, for on_leave, where nobody waits, only
the log), logged once with its traceback; the connection and every other message of the same
read batch are handled as if nothing had happened. Batches are sent in one write with a raw
client so the server reads them together.
"""

from __future__ import annotations

import json
import time

import pytest
from raw_ws import RawWS, frame
from websockets.asyncio.client import connect
from wsa_ws import aio, close_code, new_id, running_server, uid

TRACEBACK = "Traceback (most recent call last)"


@pytest.fixture(scope="module")
def server():
    # Every failure provoked here is logged with its traceback, on purpose.
    with running_server("--app", "tests.apps.faulty_app:app", allow_tracebacks=True) as srv:
        yield srv


def msg(frm: str, to: str, type: str, id: str, method: str, params=None) -> bytes:
    payload = {"method": method} if params is None else {"method": method, "params": params}
    return json.dumps({"from": frm, "to": to, "type": type, "id": id, "payload": payload}).encode()


def login(ws: RawWS, cid: str) -> dict:
    ws.send(frame(msg(cid, "server", "request", new_id(), "auth@v1/login")))
    return json.loads(ws.recv_text())


def replies(ws: RawWS, n: int) -> list[dict]:
    return [json.loads(ws.recv_text()) for _ in range(n)]


def answer(reply: dict) -> tuple:
    """(id, result, code) of a response."""
    return reply["id"], reply["payload"]["result"], reply["payload"].get("code")


def logged(server, since: int, text: str, times: int) -> None:
    """Since log offset ``since``: exactly ``times`` error records, each ``text`` with its traceback."""

    def count(what: str) -> int:
        return server.log[since:].count(what)

    deadline = time.monotonic() + 5
    while (count(text) < times or count(TRACEBACK) < times) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (count(text), count(" ERROR ")) == (times, times) and count(TRACEBACK) >= times, server.log[since:]


def open_bound(server, prefix: str = "u") -> tuple[RawWS, str]:
    ws = RawWS(server.host, server.port)
    cid = uid(prefix)
    assert login(ws, cid)["payload"] == {"result": "success", "receipt": cid}
    return ws, cid


def test_a_raising_policy_fails_its_message_and_the_rest_of_the_batch_goes_on(server):
    since = len(server.log)
    with RawWS(server.host, server.port) as a_ws:
        a = uid("pol")
        assert login(a_ws, a)["payload"]["result"] == "success"
        b_ws, b = open_bound(server)
        with b_ws:
            ids = [new_id() for _ in range(5)]
            a_ws.send(
                frame(msg(a, b, "request", ids[0], "crash@v1/relay"))
                + frame(msg(a, "server", "request", ids[1], "wsa@v1/ping"))
                + frame(msg(a, b, "event", ids[2], "crash@v1/event"))
                + frame(msg(a, "client", "event", ids[3], "crash@v1/broadcast"))
                + frame(msg(a, b, "event", ids[4], "fine@v1/event", {"x": 1}))
            )
            got = replies(a_ws, 4)
            assert [answer(r) for r in got] == [
                (ids[0], "fail", "INTERNAL_ERROR"),
                (ids[1], "success", None),
                (ids[2], "fail", "INTERNAL_ERROR"),
                (ids[3], "fail", "INTERNAL_ERROR"),
            ]
            assert all(r["from"] == "server" and r["to"] == a for r in got)
            # Only the allowed event reached b; then both connections still answer.
            assert json.loads(b_ws.recv_text())["id"] == ids[4]
            for ws, me in ((a_ws, a), (b_ws, b)):
                id = new_id()
                ws.send(frame(msg(me, "server", "request", id, "wsa@v1/ping")))
                assert answer(json.loads(ws.recv_text())) == (id, "success", None)
    logged(server, since, "the authorize policy failed", 3)


def test_a_raising_on_join_hook_fails_the_login_and_leaves_the_id_unbound(server):
    since = len(server.log)
    with RawWS(server.host, server.port) as ws:
        crasher = uid("joincrash")
        ids = [new_id() for _ in range(2)]
        ws.send(
            frame(msg(crasher, "server", "request", ids[0], "auth@v1/login"))
            + frame(msg("", "server", "request", ids[1], "wsa@v1/ping"))
        )
        got = replies(ws, 2)
        assert [answer(r) for r in got] == [(ids[0], "fail", "INTERNAL_ERROR"), (ids[1], "success", None)]
        # Nobody is bound as that id, here or for anyone else.
        other_ws, other = open_bound(server)
        with other_ws:
            id = new_id()
            other_ws.send(frame(msg(other, crasher, "request", id, "chat@v1/hi")))
            assert answer(json.loads(other_ws.recv_text())) == (id, "fail", "NOT_FOUND")
            id = new_id()
            other_ws.send(frame(msg(other, "server", "request", id, "faulty@v1/connected", {"target": crasher})))
            assert json.loads(other_ws.recv_text())["payload"] == {"result": "success", "data": False}
        # The connection may still log in, as another id.
        me = uid("after")
        assert login(ws, me)["payload"] == {"result": "success", "receipt": me}
    logged(server, since, "the on_join hook failed", 1)


@aio
async def test_a_raising_on_join_hook_at_the_upgrade_closes_with_1011(server):
    """A handshake token binds the id before any request exists: the connection is closed instead."""
    since = len(server.log)
    async with connect(server.url_for("/", token=uid("joincrash")), compression=None) as ws:
        code, messages = await close_code(ws)
    assert (code, messages) == (1011, [])
    logged(server, since, "the on_join hook failed", 1)


def test_a_raising_on_leave_hook_is_logged_once_and_the_id_is_free_again(server):
    since = len(server.log)
    leaver = uid("leavecrash")
    ws = RawWS(server.host, server.port)
    assert login(ws, leaver)["payload"]["result"] == "success"
    ws.close()
    logged(server, since, "the on_leave hook failed", 1)
    with RawWS(server.host, server.port) as again:
        assert login(again, leaver)["payload"] == {"result": "success", "receipt": leaver}
        id = new_id()
        again.send(frame(msg(leaver, "server", "request", id, "wsa@v1/ping")))
        assert answer(json.loads(again.recv_text())) == (id, "success", None)
    logged(server, since, "the on_leave hook failed", 2)  # each departure, once


def test_a_raising_authenticator_fails_the_login(server):
    since = len(server.log)
    with RawWS(server.host, server.port) as ws:
        ids = [new_id() for _ in range(2)]
        ws.send(
            frame(msg("authcrash", "server", "request", ids[0], "auth@v1/login"))
            + frame(msg("", "server", "request", ids[1], "wsa@v1/ping"))
        )
        assert [answer(r) for r in replies(ws, 2)] == [(ids[0], "fail", "INTERNAL_ERROR"), (ids[1], "success", None)]
    logged(server, since, "the authenticator failed", 1)


@pytest.mark.parametrize("kind", ["set", "object", "bytes", "nan", "inf"])
def test_a_handler_value_that_is_not_json_fails_internal_error(server, kind):
    since = len(server.log)
    ws, me = open_bound(server)
    with ws:
        ids = [new_id() for _ in range(2)]
        ws.send(
            frame(msg(me, "server", "request", ids[0], "faulty@v1/unencodable", {"kind": kind}))
            + frame(msg(me, "server", "request", ids[1], "wsa@v1/ping"))
        )
        assert [answer(r) for r in replies(ws, 2)] == [(ids[0], "fail", "INTERNAL_ERROR"), (ids[1], "success", None)]
    logged(server, since, "the handler for faulty@v1/unencodable returned a value that cannot be encoded", 1)


@pytest.mark.parametrize("method", ["faulty@v1/too_deep", "faulty@v1/too_deep_async"])
def test_a_handler_value_that_cannot_be_encoded_fails_internal_error(server, method):
    since = len(server.log)
    ws, me = open_bound(server)
    with ws:
        ids = [new_id() for _ in range(2)]
        ws.send(
            frame(msg(me, "server", "request", ids[0], method))
            + frame(msg(me, "server", "request", ids[1], "wsa@v1/ping"))
        )
        got = sorted(answer(r) for r in replies(ws, 2))
        assert got == sorted([(ids[0], "fail", "INTERNAL_ERROR"), (ids[1], "success", None)])
    logged(server, since, f"the handler for {method} returned a value that cannot be encoded", 1)
