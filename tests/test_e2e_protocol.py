"""End to end, docs/protocol.md sections 1, 2 and 5-7: forms, negotiation, routing and app handlers.

A real ``wsa-fast serve`` process serving ``tests/apps/protocol_app.py``, spoken to with the
independent ``websockets`` library; every message is written and checked as JSON text.
"""

from __future__ import annotations

import json
import time

import pytest
from apps.protocol_app import SECRET_DETAIL
from websockets.frames import Frame, Opcode
from wsa_ws import (
    FORMS,
    ISO_ID,
    NEGOTIATIONS,
    SHORT_ID,
    SUBPROTOCOL,
    Clients,
    InvalidStatus,
    Raw,
    aio,
    encode,
    expect_error_event,
    expect_fail,
    expect_response,
    form_of,
    http_get,
    new_id,
    normalize,
    open_ws,
    running_server,
    settled,
    uid,
)

APP = "tests.apps.protocol_app:app"
REQUEST_TIMEOUT = 1.0
FORM_PAIRS = [(a, b) for a in FORMS for b in FORMS]


@pytest.fixture(scope="module")
def server():
    # Handlers crash on purpose here (INTERNAL_ERROR), so their tracebacks are expected in the log.
    with running_server("--app", APP, "--request-timeout", str(REQUEST_TIMEOUT), allow_tracebacks=True) as srv:
        yield srv


# ================================================================ 1. frames, forms, negotiation


def ping_text(form: str, to: str, id: str) -> str:
    """The exact bytes of a successful ping answer."""
    return encode(form, "server", to, "response", id, result="success")


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_subprotocol_is_echoed_and_picks_the_form(server, form):
    async with Clients(server) as cl:
        peer = await cl.open(form, "subprotocol")
        assert peer.ws.subprotocol == SUBPROTOCOL[form]
        id = await peer.request("server", "wsa@v1/ping", frm="")
        assert await peer.recv_raw() == ping_text(form, "", id)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_query_format_picks_the_form(server, form):
    async with Clients(server) as cl:
        peer = await cl.open(form, "query")
        assert peer.ws.subprotocol is None
        id = await peer.request("server", "wsa@v1/ping", frm="")
        assert await peer.recv_raw() == ping_text(form, "", id)


@aio
async def test_without_subprotocol_or_query_the_form_is_verbose(server):
    async with Clients(server) as cl:
        peer = await cl.open("verbose", None)
        assert peer.ws.subprotocol is None
        id = await peer.request("server", "wsa@v1/ping", frm="")
        assert await peer.recv_raw() == ping_text("verbose", "", id)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_subprotocol_wins_over_query(server, form):
    other = "compact" if form == "verbose" else "verbose"
    async with Clients(server) as cl:
        peer = await cl.open(form, "subprotocol", query={"format": other})
        assert peer.ws.subprotocol == SUBPROTOCOL[form]
        id = await peer.request("server", "wsa@v1/ping", frm="")
        assert await peer.recv_raw() == ping_text(form, "", id)


@pytest.mark.parametrize(
    "offered, form",
    [
        (["chat", "wsa.v1.compact", "wsa.v1"], "compact"),
        (["wsa.v1", "wsa.v1.compact"], "verbose"),
        (["x-other", "wsa.v1"], "verbose"),
    ],
)
@aio
async def test_first_known_subprotocol_offered_wins(server, offered, form):
    async with Clients(server) as cl:
        peer = await cl.open(form, None, subprotocols=offered)
        assert peer.ws.subprotocol == SUBPROTOCOL[form]
        id = await peer.request("server", "wsa@v1/ping", frm="")
        assert await peer.recv_raw() == ping_text(form, "", id)


@pytest.mark.parametrize("query, form", [({}, "verbose"), ({"format": "compact"}, "compact")])
@aio
async def test_unknown_subprotocol_alone_is_not_echoed(server, query, form):
    async with Clients(server) as cl:
        peer = await cl.open(form, None, subprotocols=["chat.v2"], query=query)
        assert peer.ws.subprotocol is None
        id = await peer.request("server", "wsa@v1/ping", frm="")
        assert await peer.recv_raw() == ping_text(form, "", id)


@pytest.mark.parametrize("value", ["bogus", "Compact", "VERBOSE", "json", "verbose,compact"])
@aio
async def test_unknown_format_query_is_http_400(server, value):
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(server, how=None, query={"format": value})
    assert refused.value.response.status_code == 400


def test_healthz_answers_200_ok_without_upgrading(server):
    status, body = http_get(server, "/healthz")
    assert status == 200
    assert body.strip() == b"ok"


@pytest.mark.parametrize("conn_form", FORMS)
@aio
async def test_either_form_is_accepted_on_any_connection(server, conn_form):
    """The server tells forms apart by keys, and answers in the connection's form."""
    other = "compact" if conn_form == "verbose" else "verbose"
    async with Clients(server) as cl:
        peer = await cl.open(conn_form)
        me = uid("mix")
        login_id = await peer.request("server", "auth@v1/login", frm=me, form=other)
        assert await peer.recv_raw() == encode(
            conn_form, "server", me, "response", login_id, result="success", receipt=me
        )
        peer.cid = me
        id = await peer.request("server", "wsa@v1/ping", form=other)
        assert await peer.recv_raw() == ping_text(conn_form, me, id)


# ================================================================ 2 + 5. relaying between clients

PARAMS_TEXT = '{ "text" : "h\\u00e9llo \\"x\\"",  "n":[1, 2.50, -0e3, 1E+2], "t":true,"z":null }'
ARRAY_TEXT = '[ {"a" :1} ,"two", [ ] ]'
DATA_TEXT = '{"ok" : true,  "list":[ 1 ,2 ]}'


@pytest.mark.parametrize("form_a, form_b", FORM_PAIRS)
@pytest.mark.parametrize("how", NEGOTIATIONS)
@aio
async def test_relayed_request_and_response_arrive_in_each_receivers_form_byte_for_byte(server, form_a, form_b, how):
    async with Clients(server) as cl:
        a = await cl.open(form_a, how, login=uid("a"))
        b = await cl.open(form_b, how, login=uid("b"))
        id = new_id()
        await a.send_raw(encode(form_a, a.cid, b.cid, "request", id, method="chat@v1/send", params=Raw(PARAMS_TEXT)))
        assert await b.recv_raw() == encode(
            form_b, a.cid, b.cid, "request", id, method="chat@v1/send", params=Raw(PARAMS_TEXT)
        )
        await b.send_raw(
            encode(form_b, b.cid, a.cid, "response", id, result="success", receipt="done", data=Raw(DATA_TEXT))
        )
        assert await a.recv_raw() == encode(
            form_a, b.cid, a.cid, "response", id, result="success", receipt="done", data=Raw(DATA_TEXT)
        )

        # A failure, with data, answered the other way round.
        id2 = new_id()
        await b.send_raw(encode(form_b, b.cid, a.cid, "request", id2, method="chat@v1/ask", params=Raw(ARRAY_TEXT)))
        assert await a.recv_raw() == encode(
            form_a, b.cid, a.cid, "request", id2, method="chat@v1/ask", params=Raw(ARRAY_TEXT)
        )
        await a.send_raw(encode(form_a, a.cid, b.cid, "response", id2, result="fail", code="NOPE_2", data=Raw('"why"')))
        assert await b.recv_raw() == encode(
            form_b, a.cid, b.cid, "response", id2, result="fail", code="NOPE_2", data=Raw('"why"')
        )
        await settled(a, b)


@pytest.mark.parametrize("form_a, form_b", FORM_PAIRS)
@aio
async def test_relayed_request_without_params_and_plain_success(server, form_a, form_b):
    async with Clients(server) as cl:
        a, b = await cl.bound(form_a, form_b)
        id = await a.request(b.cid, "chat@v1/poke", id="2025-05-14T11:27:31.536370717+08:00")
        assert await b.recv_raw() == encode(form_b, a.cid, b.cid, "request", id, method="chat@v1/poke")
        await b.respond(a.cid, id)
        assert await a.recv_raw() == encode(form_a, b.cid, a.cid, "response", id, result="success")


@pytest.mark.parametrize("form_a, form_b", FORM_PAIRS)
@aio
async def test_null_receipt_is_relayed(server, form_a, form_b):
    async with Clients(server) as cl:
        a, b = await cl.bound(form_a, form_b)
        id = await a.request(b.cid, "chat@v1/poke")
        await b.recv()
        await b.respond(a.cid, id, receipt=None)
        assert await a.recv() == {
            "from": b.cid,
            "to": a.cid,
            "type": "response",
            "id": id,
            "payload": {"result": "success", "receipt": None},
        }


@pytest.mark.parametrize("form_a, form_b", FORM_PAIRS)
@aio
async def test_relayed_event_arrives_and_the_sender_gets_nothing(server, form_a, form_b):
    async with Clients(server) as cl:
        a, b = await cl.bound(form_a, form_b)
        id = new_id()
        await a.send_raw(encode(form_a, a.cid, b.cid, "event", id, method="chat@v1/typing", params=Raw(ARRAY_TEXT)))
        assert await b.recv_raw() == encode(
            form_b, a.cid, b.cid, "event", id, method="chat@v1/typing", params=Raw(ARRAY_TEXT)
        )
        await settled(a, b)


@aio
async def test_compact_capital_P_payload_is_accepted_and_relayed(server):
    async with Clients(server) as cl:
        a, b = await cl.bound("compact", "verbose")
        id = new_id()
        await a.send_raw('{"f":"%s","t":"%s","y":"e","i":"%s","P":{"m":"chat@v1/hi","p":[1]}}' % (a.cid, b.cid, id))
        assert await b.recv_raw() == encode(
            "verbose", a.cid, b.cid, "event", id, method="chat@v1/hi", params=Raw("[1]")
        )


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_request_or_event_to_an_absent_client_is_not_found(server, form):
    async with Clients(server) as cl:
        (a,) = await cl.bound(form)
        nobody = uid("nobody")
        id = await a.request(nobody, "chat@v1/send", {"x": 1})
        expect_fail(await a.recv(), "NOT_FOUND", id=id, to=a.cid)
        id = await a.event(nobody, "chat@v1/typing")
        expect_fail(await a.recv(), "NOT_FOUND", id=id, to=a.cid)
        await settled(a)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_same_requester_target_and_id_while_pending_is_duplicate_id(server, form):
    async with Clients(server) as cl:
        a, b, c = await cl.bound(form, form, form)
        id = await a.request(b.cid, "chat@v1/send", {"n": 1})
        got = await b.recv()
        assert got["payload"]["params"] == {"n": 1}
        await a.request(b.cid, "chat@v1/send", {"n": 2}, id=id)
        expect_fail(await a.recv(), "DUPLICATE_ID", id=id, to=a.cid)
        await settled(a, b)  # the duplicate went nowhere

        # The same id to another target, or from another requester, is a different request.
        await a.request(c.cid, "chat@v1/send", {"n": 3}, id=id)
        assert (await c.recv())["payload"]["params"] == {"n": 3}
        await c.request(b.cid, "chat@v1/send", {"n": 4}, id=id)
        assert (await b.recv())["payload"]["params"] == {"n": 4}

        await b.respond(a.cid, id, receipt="first")
        expect_response(await a.recv(), frm=b.cid, id=id, to=a.cid, receipt="first")
        await settled(b, a)
        # Answered, so the id is free again.
        await a.request(b.cid, "chat@v1/send", {"n": 5}, id=id)
        assert (await b.recv())["payload"]["params"] == {"n": 5}


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_unanswered_request_times_out_and_a_late_answer_is_dropped(server, form):
    async with Clients(server) as cl:
        a, b = await cl.bound(form, form)
        id = await a.request(b.cid, "chat@v1/send")
        await b.recv()
        started = time.monotonic()
        reply = await a.recv(timeout=REQUEST_TIMEOUT + 10)
        waited = time.monotonic() - started
        expect_fail(reply, "TIMEOUT", id=id, to=a.cid)
        assert waited >= REQUEST_TIMEOUT - 0.2, waited  # not before its time; how late depends on the machine
        await b.respond(a.cid, id, receipt="too late")
        await settled(b, a)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_target_leaving_while_a_request_is_pending_is_gone(server, form):
    async with Clients(server) as cl:
        a, b = await cl.bound(form, form)
        id = await a.request(b.cid, "chat@v1/send")
        await b.recv()
        await b.close()
        expect_fail(await a.recv(), "GONE", id=id, to=a.cid)
        # Exactly one answer: no TIMEOUT follows.
        await a.silent(REQUEST_TIMEOUT + 0.3)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_duplicate_unknown_and_misaddressed_responses_are_dropped(server, form):
    async with Clients(server) as cl:
        a, b, c = await cl.bound(form, form, form)
        id = await a.request(b.cid, "chat@v1/send")
        await b.recv()
        # Addressed to the wrong requester: answers nothing pending.
        await b.respond(c.cid, id, receipt="wrong")
        await settled(b, c, a)
        await b.respond(a.cid, id, receipt="one")
        expect_response(await a.recv(), frm=b.cid, id=id, to=a.cid, receipt="one")
        await b.respond(a.cid, id, receipt="two")  # duplicate
        await b.respond(a.cid, new_id(), receipt="three")  # unknown
        await b.respond(a.cid, id, "fail", code="LATE")  # duplicate again
        await settled(b, a)  # dropped silently, not answered with an error


@pytest.mark.parametrize("form_a", FORMS)
@aio
async def test_broadcast_event_reaches_every_other_bound_client_in_its_form(server, form_a):
    async with Clients(server) as cl:
        a, b, c = await cl.bound(form_a, "compact", "verbose")
        anonymous = await cl.open("verbose")
        id = new_id()
        await a.send_raw(encode(form_a, a.cid, "client", "event", id, method="room@v1/say", params=Raw(PARAMS_TEXT)))
        for peer in (b, c):
            assert await peer.recv_raw() == encode(
                peer.form, a.cid, "client", "event", id, method="room@v1/say", params=Raw(PARAMS_TEXT)
            )
        await settled(a, anonymous, b, c)


# A broadcast this large to this many clients (frame x connections over 1 MiB) is fanned out from one
# buffer its receivers share, written over several loop iterations (docs/protocol.md "Turns").
LARGE_BROADCAST = 200_000
LARGE_RECEIVERS = 6


@aio
async def test_a_large_broadcast_keeps_its_place_among_each_receivers_messages(server):
    """What a sender writes to a receiver just before and just after a large broadcast reaches it in that
    order, around the broadcast, and every receiver gets the broadcast whole, in its own form."""
    async with Clients(server) as cl:
        sender, *receivers = await cl.bound("verbose", *(FORMS * (LARGE_RECEIVERS // len(FORMS))))
        first = receivers[0]
        params = Raw(json.dumps({"text": "x" * LARGE_BROADCAST, "end": 'é"end'}))
        before, big, after = new_id(), new_id(), new_id()
        messages = [
            encode("verbose", sender.cid, first.cid, "event", before, method="room@v1/before"),
            encode("verbose", sender.cid, "client", "event", big, method="room@v1/big", params=params),
            encode("verbose", sender.cid, first.cid, "event", after, method="room@v1/after"),
        ]
        # In one write, so the gateway reads them in one batch: "before" still waits in first's output when
        # the broadcast is queued, and "after" is written to it while the broadcast is not yet sent.
        sender.ws.transport.write(b"".join(Frame(Opcode.TEXT, text.encode()).serialize(mask=True) for text in messages))
        assert [(await first.recv())["id"] for _ in range(3)] == [before, big, after]
        for peer in receivers[1:]:
            assert await peer.recv_raw() == encode(
                peer.form, sender.cid, "client", "event", big, method="room@v1/big", params=params
            )
        await settled(sender, *receivers)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_request_to_client_is_invalid_target(server, form):
    async with Clients(server) as cl:
        a, b = await cl.bound(form, form)
        id = await a.request("client", "room@v1/say")
        expect_fail(await a.recv(), "INVALID_TARGET", id=id, to=a.cid)
        await settled(a, b)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_response_to_client_is_an_error_event_invalid_target(server, form):
    async with Clients(server) as cl:
        a, b = await cl.bound(form, form)
        id = new_id()
        await a.respond("client", id, receipt="x")
        expect_error_event(await a.recv(), "INVALID_TARGET", to=a.cid, id=id)
        await settled(a, b)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_response_to_server_answering_nothing_is_dropped(server, form):
    async with Clients(server) as cl:
        (a,) = await cl.bound(form)
        await a.respond("server", new_id(), receipt="unasked")
        await a.respond("server", new_id(), "fail", code="NOPE")
        await settled(a)


@aio
async def test_authorization_policy_is_asked_for_client_to_client_messages(server):
    async with Clients(server) as cl:
        a, b = await cl.bound("verbose", "compact")
        # Refused: request, event and broadcast event, none delivered.
        id = await a.request(b.cid, "forbidden@v1/secret", {"x": 1})
        expect_fail(await a.recv(), "PERMISSION_DENIED", id=id, to=a.cid)
        id = await a.event(b.cid, "forbidden@v1/secret")
        expect_fail(await a.recv(), "PERMISSION_DENIED", id=id, to=a.cid)
        id = await a.event("client", "forbidden@v1/secret")
        expect_fail(await a.recv(), "PERMISSION_DENIED", id=id, to=a.cid)
        await settled(a, b)
        # Allowed ones flow.
        id = await a.request(b.cid, "chat@v1/send")
        assert (await b.recv())["id"] == id
        await b.respond(a.cid, id)
        expect_response(await a.recv(), frm=b.cid, id=id, to=a.cid)
        id = await a.event("client", "chat@v1/hello")
        assert (await b.recv())["id"] == id
        # What the policy saw (requests to the server are not asked about).
        reply = await a.call("server", "test@v1/policy_calls")
        assert reply["payload"]["data"] == [
            [a.cid, b.cid, "request", "forbidden@v1/secret"],
            [a.cid, b.cid, "event", "forbidden@v1/secret"],
            [a.cid, "client", "event", "forbidden@v1/secret"],
            [a.cid, b.cid, "request", "chat@v1/send"],
            [a.cid, "client", "event", "chat@v1/hello"],
        ]


# ================================================================ 5. requests and events to the server

HANDLER_FLAVOURS = ["", "_async"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("flavour", HANDLER_FLAVOURS)
@aio
async def test_handler_returning_none_is_plain_success(server, form, flavour):
    async with Clients(server) as cl:
        (a,) = await cl.bound(form)
        id = await a.request("server", f"test@v1/none{flavour}", {"ignored": True})
        assert await a.recv_raw() == encode(form, "server", a.cid, "response", id, result="success")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("flavour", HANDLER_FLAVOURS)
@aio
async def test_handler_returning_a_string_is_the_receipt(server, form, flavour):
    async with Clients(server) as cl:
        (a,) = await cl.bound(form)
        id = await a.request("server", f"test@v1/receipt{flavour}", {"receipt": "order-42 ✓"})
        raw = await a.recv_raw()
        expect_response(json_normal(raw, form), id=id, to=a.cid, receipt="order-42 ✓")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("flavour", HANDLER_FLAVOURS)
# Integers past 64 bits come back exact (decoded and encoded off orjson's fast path, as the oracle does).
@pytest.mark.parametrize(
    "value", [{"k": [1, "x", None]}, [1, 2, 3], 0, 1.5, True, False, {}, [], 2**70, {"n": [-(2**64), 1e300]}]
)
@aio
async def test_handler_returning_another_value_is_success_with_data(server, form, flavour, value):
    async with Clients(server) as cl:
        (a,) = await cl.bound(form)
        id = await a.request("server", f"test@v1/value{flavour}", {"value": value})
        reply = await a.recv()
        expect_response(reply, id=id, to=a.cid, data=value)


@pytest.mark.parametrize("params", [{"a": [1, {"b": None}]}, [1, "two"], None])
@aio
async def test_handler_sees_sender_id_method_and_params(server, params):
    async with Clients(server) as cl:
        (a,) = await cl.bound("compact")
        id = await a.request("server", "test@v1/context", *([] if params is None else [params]))
        expect_response(
            await a.recv(),
            id=id,
            to=a.cid,
            data={"client_id": a.cid, "id": id, "method": "test@v1/context", "params": params},
        )


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("flavour", HANDLER_FLAVOURS)
@aio
async def test_handler_raising_wsaerror_fails_with_its_code(server, form, flavour):
    async with Clients(server) as cl:
        (a,) = await cl.bound(form)
        id = await a.request("server", f"test@v1/raise{flavour}", {"code": "MY_CODE"})
        assert await a.recv_raw() == encode(form, "server", a.cid, "response", id, result="fail", code="MY_CODE")
        id = await a.request("server", f"test@v1/raise{flavour}", {"code": "NOT_FOUND"})
        expect_fail(await a.recv(), "NOT_FOUND", id=id, to=a.cid)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("flavour", HANDLER_FLAVOURS)
@aio
async def test_handler_crashing_is_internal_error_without_details(server, form, flavour):
    async with Clients(server) as cl:
        (a,) = await cl.bound(form)
        id = await a.request("server", f"test@v1/crash{flavour}")
        raw = await a.recv_raw()
        assert raw == encode(form, "server", a.cid, "response", id, result="fail", code="INTERNAL_ERROR")
        assert SECRET_DETAIL not in raw and "ValueError" not in raw
        await settled(a)
    # ... but it is logged.
    assert server.wait_for_log(SECRET_DETAIL)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_no_handler_is_method_not_found(server, form):
    async with Clients(server) as cl:
        (a,) = await cl.bound(form)
        id = await a.request("server", "nothing@v1/here", {"x": 1})
        expect_fail(await a.recv(), "METHOD_NOT_FOUND", id=id, to=a.cid)
        # A request for a method only handled as an event, and the reverse.
        id = await a.request("server", "test@v1/notify", {"tell": a.cid})
        expect_fail(await a.recv(), "METHOD_NOT_FOUND", id=id, to=a.cid)
        id = await a.event("server", "test@v1/none")
        expect_fail(await a.recv(), "METHOD_NOT_FOUND", id=id, to=a.cid)
        id = await a.event("server", "nothing@v1/here")
        expect_fail(await a.recv(), "METHOD_NOT_FOUND", id=id, to=a.cid)
        # wsa@v1/ping is a request, not an event.
        id = await a.event("server", "wsa@v1/ping")
        expect_fail(await a.recv(), "METHOD_NOT_FOUND", id=id, to=a.cid)
        await settled(a)


@pytest.mark.parametrize("form_a, form_b", FORM_PAIRS)
@pytest.mark.parametrize("flavour", HANDLER_FLAVOURS)
@aio
async def test_event_handler_runs_and_answers_nothing(server, form_a, form_b, flavour):
    async with Clients(server) as cl:
        a, b = await cl.bound(form_a, form_b)
        params = {"tell": b.cid, "note": [1, 2]}
        id = await a.event("server", f"test@v1/notify{flavour}", params)
        got = await b.recv()
        assert got["from"] == "server" and got["to"] == b.cid and got["type"] == "event", got
        assert got["payload"] == {"method": "test@v1/notified", "params": {"by": a.cid, "id": id, "params": params}}
        await settled(a, b)  # an answer would have been written in the same step as the notification


@aio
async def test_event_handler_broadcasting_reaches_everyone_including_the_sender(server):
    async with Clients(server) as cl:
        a, b = await cl.bound("verbose", "compact")
        await a.event("server", "test@v1/shout", {"x": 1})
        seen = []
        for peer in (a, b):
            got = await peer.recv()
            assert got["from"] == "server" and got["to"] == "client" and got["type"] == "event", got
            assert got["payload"] == {"method": "test@v1/shouted", "params": {"by": a.cid, "params": {"x": 1}}}
            seen.append(got["id"])
        assert seen[0] == seen[1]
        await settled(a, b)  # the event itself is not answered


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_event_handler_raising_fails_with_its_code_or_internal_error(server, form):
    async with Clients(server) as cl:
        (a,) = await cl.bound(form)
        id = await a.event("server", "test@v1/event_raise")
        expect_fail(await a.recv(), "EVENT_REFUSED", id=id, to=a.cid)
        id = await a.event("server", "test@v1/event_crash")
        raw = await a.recv_raw()
        assert raw == encode(form, "server", a.cid, "response", id, result="fail", code="INTERNAL_ERROR")
        await settled(a)


# ================================================================ 5. the server speaking first


@pytest.mark.parametrize("form_a, form_b", FORM_PAIRS)
@aio
async def test_server_request_to_a_client_awaits_its_answer(server, form_a, form_b):
    async with Clients(server) as cl:
        a, b = await cl.bound(form_a, form_b)
        id = await a.request(
            "server", "test@v1/ask", {"target": b.cid, "method": "quiz@v1/question", "params": {"q": [1, 2]}}
        )
        raw = await b.recv_raw()
        asked = json_normal(raw, form_b)
        assert ISO_ID.match(asked["id"]), asked
        assert raw == encode(
            form_b, "server", b.cid, "request", asked["id"], method="quiz@v1/question", params=Raw('{"q":[1,2]}')
        )
        await settled(a)  # the ask is answered only once b answers
        await b.respond("server", asked["id"], receipt="yes", data={"n": 1})
        expect_response(
            await a.recv(),
            id=id,
            to=a.cid,
            data={
                "from": b.cid,
                "to": "server",
                "id": asked["id"],
                "result": "success",
                "receipt": "yes",
                "data": {"n": 1},
            },
        )
        await settled(b, a)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_server_request_answered_with_fail_raises_its_code(server, form):
    async with Clients(server) as cl:
        a, b = await cl.bound(form, form)
        id = await a.request("server", "test@v1/ask", {"target": b.cid, "method": "quiz@v1/question"})
        asked = await b.recv()
        assert "params" not in asked["payload"]
        await b.respond("server", asked["id"], "fail", code="NO_IDEA")
        expect_fail(await a.recv(), "NO_IDEA", id=id, to=a.cid)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_server_request_times_out_and_the_late_answer_is_dropped(server, form):
    async with Clients(server) as cl:
        a, b = await cl.bound(form, form)
        id = await a.request("server", "test@v1/ask", {"target": b.cid, "method": "quiz@v1/q", "timeout": 0.3})
        asked = await b.recv()
        expect_fail(await a.recv(), "TIMEOUT", id=id, to=a.cid)
        await b.respond("server", asked["id"], receipt="late")
        await settled(b, a)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_server_request_to_a_client_that_leaves_is_gone(server, form):
    async with Clients(server) as cl:
        a, b = await cl.bound(form, form)
        id = await a.request("server", "test@v1/ask", {"target": b.cid, "method": "quiz@v1/q"})
        await b.recv()
        await b.close()
        expect_fail(await a.recv(), "GONE", id=id, to=a.cid)
        await settled(a)


@aio
async def test_server_request_to_an_absent_client_is_not_found(server):
    async with Clients(server) as cl:
        (a,) = await cl.bound("verbose")
        id = await a.request("server", "test@v1/ask", {"target": uid("absent"), "method": "quiz@v1/q"})
        expect_fail(await a.recv(), "NOT_FOUND", id=id, to=a.cid)


@pytest.mark.parametrize("form_b", FORMS)
@aio
async def test_server_event_to_a_client(server, form_b):
    async with Clients(server) as cl:
        a, b = await cl.bound("verbose", form_b)
        id = await a.request(
            "server", "test@v1/tell", {"target": b.cid, "method": "news@v1/item", "params": ["x", {"y": 2}]}
        )
        expect_response(await a.recv(), id=id, to=a.cid)
        raw = await b.recv_raw()
        got = json_normal(raw, form_b)
        assert raw == encode(
            form_b, "server", b.cid, "event", got["id"], method="news@v1/item", params=Raw('["x",{"y":2}]')
        )
        id = await a.request("server", "test@v1/tell", {"target": uid("absent"), "method": "news@v1/item"})
        expect_fail(await a.recv(), "NOT_FOUND", id=id, to=a.cid)


@aio
async def test_app_broadcast_reaches_every_bound_client_each_in_its_form(server):
    async with Clients(server) as cl:
        a, b, c = await cl.bound("verbose", "compact", "compact")
        anonymous = await cl.open("compact")
        id = await a.request("server", "test@v1/broadcast", {"method": "news@v1/flash", "params": {"t": "hi"}})
        first = await a.recv()
        second = await a.recv()
        reply, flash = (first, second) if first["type"] == "response" else (second, first)
        assert reply["id"] == id and reply["payload"]["result"] == "success", reply
        assert reply["payload"]["data"]["count"] >= 3, reply
        ids = set()
        for _peer, got in ((a, flash), (b, await b.recv()), (c, await c.recv())):
            assert got["from"] == "server" and got["to"] == "client" and got["type"] == "event", got
            assert got["payload"] == {"method": "news@v1/flash", "params": {"t": "hi"}}, got
            ids.add(got["id"])
        assert len(ids) == 1
        await settled(a, anonymous)  # the broadcast went out with a's answer: anonymous had it by now, if at all


@aio
async def test_server_ids_are_iso8601_with_nanoseconds_strictly_increasing(server):
    async with Clients(server) as cl:
        a, b = await cl.bound("verbose", "compact")
        ids = []
        for _ in range(20):
            await a.request("server", "test@v1/tell", {"target": b.cid, "method": "news@v1/tick"})
        for _ in range(20):
            assert (await a.recv())["payload"] == {"result": "success"}
            ids.append((await b.recv())["id"])
        assert all(ISO_ID.match(i) for i in ids), ids
        assert ids == sorted(ids) and len(set(ids)) == len(ids), ids


def test_id_style_short_makes_five_character_ids():
    with running_server("--app", APP, "--id-style", "short") as srv:

        @aio
        async def check():
            async with Clients(srv) as cl:
                a, b = await cl.bound("verbose", "compact")
                ids = []
                for _ in range(5):
                    await a.request("server", "test@v1/tell", {"target": b.cid, "method": "news@v1/tick"})
                    await a.recv()
                    ids.append((await b.recv())["id"])
                await b.send_raw("not json")
                expect_error_event(await b.recv(), "INVALID_MESSAGE", to=b.cid)
                assert all(SHORT_ID.match(i) for i in ids) and len(set(ids)) == 5, ids

        check()


def json_normal(raw: str, form: str) -> dict:
    obj = json.loads(raw)
    assert form_of(obj) == form, raw
    return normalize(obj)
