"""wsa_fast.client.Client against a real gateway process, over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from picows import WSHandshakeError, WSListener, WSMsgType, ws_create_server
from wsa_ws import aio

from wsa_fast import COMPACT, VERBOSE, WSAError
from wsa_fast.client import Client

ECHO_APP = "tests.apps.echo_app:app"
FORMS = ["verbose", "compact"]
FORM_CODE = {"verbose": VERBOSE, "compact": COMPACT}

# Params that must survive relaying and re-encoding untouched.
RICH_PARAMS = {
    "nested": {"a": [1, 2, {"b": None, "c": [True, False]}], "empty": {}, "list": []},
    "unicode": 'héllo wörld ✓ 日本語 😀 \u2028 "quoted" \\ back',
    "big": [2**63 - 1, -(2**63), 2**64 - 1],
    "float": 3.25,
    "neg": -17,
}


async def logged_in(
    url: str, client_id: str, form: str = "verbose", negotiate: str = "subprotocol", **kwargs: Any
) -> Client:
    client = await Client.connect(url, form=form, negotiate=negotiate, **kwargs)
    assert await client.login(client_id) == client_id
    return client


# ---- session ----


@aio
async def test_ping_before_login(gateway) -> None:
    async with Client.connect(gateway.url) as c:
        await c.ping()
        response = await c.request("wsa@v1/ping")
        assert response.result == "success" and response.from_ == "server"
        assert c.client_id is None


@aio
async def test_only_ping_and_login_before_login(gateway) -> None:
    async with Client.connect(gateway.url, form="compact") as c:
        with pytest.raises(WSAError) as info:
            await c.request("echo@v1/echo", {"x": 1})
        assert info.value.code == "UNAUTHENTICATED"
        assert info.value.response.from_ == "server"


@pytest.mark.parametrize("negotiate", ["subprotocol", "query"])
@pytest.mark.parametrize("form", FORMS)
@aio
async def test_login_in_each_form_and_negotiation(gateway, form: str, negotiate: str) -> None:
    client_id = f"login-{form}-{negotiate}"
    async with Client.connect(gateway.url, form=form, negotiate=negotiate) as c:
        assert c.form == FORM_CODE[form]
        assert await c.login(client_id) == client_id
        assert c.client_id == client_id
        response = await c.request("wsa@v1/ping")
        assert response.form == FORM_CODE[form]  # the server writes in the connection's form
        assert response.to == client_id
        with pytest.raises(WSAError) as info:
            await c.login(client_id)
        assert info.value.code == "ALREADY_AUTHENTICATED"


@aio
async def test_no_negotiation_is_verbose(gateway) -> None:
    async with Client.connect(gateway.url, negotiate="none") as c:
        assert c.form == VERBOSE
        await c.login("plain")
        assert (await c.request("wsa@v1/ping")).form == VERBOSE
    with pytest.raises(ValueError):
        Client.connect(gateway.url, form="compact", negotiate="none")


@aio
async def test_bad_login_ids_are_refused(gateway) -> None:
    async with Client.connect(gateway.url) as c:
        with pytest.raises(WSAError) as info:
            await c.login("")  # dev auth: no credentials name an id
        assert info.value.code == "PERMISSION_DENIED"
        with pytest.raises(ValueError):
            await c.login("server")
        assert c.client_id is None


@aio
async def test_handshake_token_binds(gateway) -> None:
    async with (
        Client.connect(gateway.url, token="tokened", client_id="tokened", form="compact") as t,
        await logged_in(gateway.url, "token-peer") as peer,
    ):
        await peer.send_event("chat@v1/hello", {"hi": 1}, to="tokened")
        event = await t.next_event("chat@v1/hello")
        assert (event.from_, event.to, event.params) == ("token-peer", "tokened", {"hi": 1})
        with pytest.raises(WSAError) as info:
            await t.login("tokened")
        assert info.value.code == "ALREADY_AUTHENTICATED"


@aio
async def test_refused_token_fails_the_upgrade(gateway) -> None:
    with pytest.raises(WSHandshakeError, match="401"):
        await Client.connect(gateway.url, token="not a valid id!")


@aio
async def test_outgoing_messages_are_checked_before_sending(gateway) -> None:
    async with Client.connect(gateway.url) as c:
        with pytest.raises(ValueError):
            await c.request("no-version/method")
        with pytest.raises(TypeError):
            await c.send_event("chat@v1/x", "a string")
        with pytest.raises(ValueError):
            await c.request("chat@v1/x", to="not valid!")
        await c.ping()


@aio
async def test_bad_messages_get_error_events_then_1008(start_gateway) -> None:
    gw = start_gateway("--max-bad-messages", "3")
    async with await logged_in(gw.url, "bad-sender", "compact") as c:
        c.send_raw(b"not json")
        error = await c.next_event("wsa@v1/error")
        assert (error.from_, error.to, error.form) == ("server", "bad-sender", COMPACT)
        assert error.params["code"] == "INVALID_MESSAGE" and "id" not in error.params
        # Readable id: answered with a fail response, which nobody here waits for.
        c.send_raw('{"f":"bad-sender","t":"s","y":"g","i":"abc12","p":{}}')
        await c.ping()  # a good message resets the count
        assert c.dropped_responses == 1
        for _ in range(3):
            c.send_raw(b"[1, 2]")
        await asyncio.wait_for(c.wait_closed(), 5)
        assert c.close_code == 1008
        errors = [await c.next_event("wsa@v1/error") for _ in range(3)]
        assert all(e.params["code"] == "INVALID_MESSAGE" for e in errors)
        with pytest.raises(WSAError) as info:
            await c.next_event("wsa@v1/error")
        assert info.value.code == "GONE"


@aio
async def test_replaced_login_closes_old_connection_with_4001(gateway) -> None:
    old = await logged_in(gateway.url, "twice", "compact")
    target = await logged_in(gateway.url, "twice-target")

    delivered = asyncio.Event()

    @target.on_request("slow@v1/never")
    async def never(msg):
        delivered.set()
        await asyncio.sleep(60)

    waiting = asyncio.ensure_future(old.request("slow@v1/never", to="twice-target"))
    await delivered.wait()  # pending at the target when the new login replaces old
    new = await logged_in(gateway.url, "twice")
    await asyncio.wait_for(old.wait_closed(), 5)
    assert old.closed and old.close_code == 4001
    with pytest.raises(WSAError) as info:
        await waiting
    assert info.value.code == "GONE" and info.value.response is None
    with pytest.raises(WSAError) as info:
        await old.ping()
    assert info.value.code == "GONE"
    await new.ping()
    assert not new.closed
    await new.close()
    await target.close()
    assert new.close_code == 1000


# ---- relaying between clients ----


@pytest.mark.parametrize(
    "sender_form,receiver_form",
    [
        ("verbose", "compact"),
        ("compact", "verbose"),
        ("compact", "compact"),
        ("verbose", "verbose"),
    ],
)
@aio
async def test_relay_request_and_response_across_forms(gateway, sender_form: str, receiver_form: str) -> None:
    a_id, b_id = f"ra-{sender_form}-{receiver_form}", f"rb-{sender_form}-{receiver_form}"
    async with (
        await logged_in(gateway.url, a_id, sender_form) as a,
        await logged_in(gateway.url, b_id, receiver_form, negotiate="query") as b,
    ):
        seen = []

        @b.on_request("calc@v1/echo")
        def echo(msg):
            seen.append(msg)
            return {"got": msg.params}

        @b.on_request("calc@v1/receipt")
        async def receipt(msg):
            await asyncio.sleep(0.01)
            return "receipt-42"

        response = await a.request("calc@v1/echo", RICH_PARAMS, to=b_id)
        assert response.form == FORM_CODE[sender_form]
        assert (response.from_, response.to, response.result) == (b_id, a_id, "success")
        assert response.data == {"got": RICH_PARAMS}
        [request] = seen
        assert request.form == FORM_CODE[receiver_form]
        assert (request.type, request.from_, request.to, request.method) == ("request", a_id, b_id, "calc@v1/echo")
        assert request.params == RICH_PARAMS
        assert request.id == response.id

        array = await a.request("calc@v1/echo", ["x", 1, [2, {"y": "ü"}]], to=b_id)
        assert array.data == {"got": ["x", 1, [2, {"y": "ü"}]]}

        response = await a.request("calc@v1/receipt", to=b_id)
        assert response.receipt == "receipt-42" and not response.has_data


@aio
async def test_relay_events_across_forms(gateway) -> None:
    async with (
        await logged_in(gateway.url, "ev-a", "verbose") as a,
        await logged_in(gateway.url, "ev-b", "compact") as b,
    ):
        await a.send_event("chat@v1/message", RICH_PARAMS, to="ev-b")
        await a.send_event("chat@v1/bare", to="ev-b")
        event = await b.next_event("chat@v1/message")
        assert event.form == COMPACT
        assert (event.type, event.from_, event.to, event.params) == ("event", "ev-a", "ev-b", RICH_PARAMS)
        bare = await b.next_event()
        assert bare.method == "chat@v1/bare" and bare.params is None

        got = asyncio.get_running_loop().create_future()
        a.on_event("chat@v1/reply")(lambda msg: got.set_result(msg))
        await b.send_event("chat@v1/reply", [1, "two"], to="ev-a")
        reply = await asyncio.wait_for(got, 5)
        assert reply.form == VERBOSE and reply.params == [1, "two"] and reply.from_ == "ev-b"


@aio
async def test_client_handler_outcomes(gateway) -> None:
    async with (
        await logged_in(gateway.url, "ho-a", "compact") as a,
        await logged_in(gateway.url, "ho-b", "verbose") as b,
    ):

        @b.on_request("svc@v1/refuse")
        def refuse(msg):
            raise WSAError("NOT_ALLOWED_HERE")

        @b.on_request("svc@v1/crash")
        async def crash(msg):
            raise RuntimeError("boom")

        @b.on_request("svc@v1/unserializable")
        def unserializable(msg):
            return {"x": object()}

        for method, code in [
            ("svc@v1/refuse", "NOT_ALLOWED_HERE"),
            ("svc@v1/crash", "INTERNAL_ERROR"),
            ("svc@v1/unserializable", "INTERNAL_ERROR"),
            ("svc@v1/missing", "METHOD_NOT_FOUND"),
        ]:
            with pytest.raises(WSAError) as info:
                await a.request(method, {"q": 1}, to="ho-b")
            assert info.value.code == code, method
            assert info.value.response.from_ == "ho-b"
            assert info.value.response.form == COMPACT
        assert b.stats["handler_errors"] == 2
        await b.ping()  # still connected


@aio
async def test_unknown_target_is_not_found(gateway) -> None:
    async with await logged_in(gateway.url, "nf-a") as a:
        with pytest.raises(WSAError) as info:
            await a.request("svc@v1/x", to="nobody-here")
        assert info.value.code == "NOT_FOUND" and info.value.response.from_ == "server"


@aio
async def test_broadcast_reaches_every_other_client_in_its_form(gateway) -> None:
    forms = ["verbose", "compact", "compact", "verbose"]
    clients = [
        await logged_in(gateway.url, f"bc-{i}", form, negotiate=("query" if i % 2 else "subprotocol"))
        for i, form in enumerate(forms)
    ]
    try:
        sender, receivers = clients[0], clients[1:]
        await sender.send_event("room@v1/said", RICH_PARAMS, to="client")
        for receiver, form in zip(receivers, forms[1:]):
            event = await receiver.next_event("room@v1/said")
            assert (event.from_, event.to, event.params) == ("bc-0", "client", RICH_PARAMS)
            assert event.form == FORM_CODE[form]
        with pytest.raises(asyncio.TimeoutError):
            await sender.next_event("room@v1/said", timeout=0.3)
        with pytest.raises(WSAError) as info:
            await sender.request("room@v1/said", to="client")
        assert info.value.code == "INVALID_TARGET"
    finally:
        for c in clients:
            await c.close()


@aio
async def test_request_timeout_from_the_server(start_gateway) -> None:
    gw = start_gateway("--request-timeout", "0.5")
    async with await logged_in(gw.url, "to-a") as a, await logged_in(gw.url, "to-b", "compact") as b:
        timed_out, late = asyncio.Event(), asyncio.Event()

        @b.on_request("slow@v1/op")
        async def slow(msg):
            await timed_out.wait()  # answers only once the gateway has said TIMEOUT, however slow the machine
            late.set()
            return "too late"

        started = asyncio.get_running_loop().time()
        with pytest.raises(WSAError) as info:
            await a.request("slow@v1/op", to="to-b", timeout=3)
        elapsed = asyncio.get_running_loop().time() - started
        assert info.value.code == "TIMEOUT"
        assert info.value.response is not None, "only the client-side timeout fired: no fail TIMEOUT was readable"
        assert info.value.response.from_ == "server"
        assert elapsed > 0.4  # the gateway's request_timeout, not earlier
        timed_out.set()
        await asyncio.wait_for(late.wait(), 5)  # the handler has returned: its answer is written
        await b.ping()  # the gateway has read it (b's connection keeps order)
        await a.ping()  # and anything it sent on to a has come before this reply
        assert a.dropped_responses == 0  # the gateway drops the late answer itself


@aio
async def test_client_side_timeout(gateway) -> None:
    async with await logged_in(gateway.url, "ct-a") as a, await logged_in(gateway.url, "ct-b") as b:
        answered = asyncio.Event()

        @b.on_request("slow@v1/op")
        async def slow(msg):
            await asyncio.sleep(0.4)
            answered.set()
            return "late"

        with pytest.raises(WSAError) as info:
            await a.request("slow@v1/op", to="ct-b", timeout=0.1)
        assert info.value.code == "TIMEOUT" and info.value.response is None
        await asyncio.wait_for(answered.wait(), 5)  # the handler has returned: its answer is written
        await b.ping()  # the gateway has read it and passed it on to a (b's connection keeps order)
        await a.ping()  # the late answer came before this reply
        assert a.dropped_responses == 1


@aio
async def test_target_disconnect_gives_gone(gateway) -> None:
    async with await logged_in(gateway.url, "gone-a", "compact") as a:
        b = await logged_in(gateway.url, "gone-b")
        received = asyncio.Event()

        @b.on_request("slow@v1/op")
        async def slow(msg):
            received.set()
            await asyncio.sleep(60)

        pending = asyncio.ensure_future(a.request("slow@v1/op", to="gone-b", timeout=3))
        await asyncio.wait_for(received.wait(), 5)
        await b.close()
        with pytest.raises(WSAError) as info:
            await pending
        assert info.value.code == "GONE", "expected the gateway's fail GONE when the target left"
        assert info.value.response.from_ == "server"


# ---- the server's own handlers ----


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_app_request_and_response(start_gateway, form: str) -> None:
    gw = start_gateway(app=ECHO_APP)
    async with await logged_in(gw.url, f"app-{form}", form) as c:
        response = await c.request("echo@v1/echo", RICH_PARAMS)
        assert response.form == FORM_CODE[form]
        assert (response.from_, response.to, response.result) == ("server", f"app-{form}", "success")
        assert response.data == RICH_PARAMS
        assert (await c.request("echo@v1/echo", ["a", 1])).data == ["a", 1]
        assert (await c.request("echo@v1/whoami")).receipt == f"app-{form}"
        with pytest.raises(WSAError) as info:
            await c.request("echo@v1/fail", {"code": "TEAPOT"})
        assert info.value.code == "TEAPOT"
        with pytest.raises(WSAError) as info:
            await c.request("echo@v1/nothing")
        assert info.value.code == "METHOD_NOT_FOUND"

        await c.send_event("echo@v1/note", {"n": 1})
        noted = await c.next_event("echo@v1/noted")
        assert noted.from_ == "server" and noted.params == {"from": f"app-{form}", "params": {"n": 1}}
        await c.request("echo@v1/notify", {"method": "echo@v1/told", "params": {"k": "v"}})
        told = await c.next_event("echo@v1/told")
        assert told.form == FORM_CODE[form] and told.params == {"k": "v"}


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_server_request_answered_by_client_handler(start_gateway, form: str) -> None:
    gw = start_gateway(app=ECHO_APP)
    async with await logged_in(gw.url, f"asked-{form}", form) as c:
        seen = []

        @c.on_request("client@v1/question")
        async def question(msg):
            seen.append(msg)
            return {"answer": msg.params["x"] * 2}

        @c.on_request("client@v1/name")
        def name(msg):
            return "my-receipt"

        response = await c.request("echo@v1/ask", {"method": "client@v1/question", "params": {"x": 21}})
        assert response.data == {"from": f"asked-{form}", "receipt": None, "data": {"answer": 42}}
        [request] = seen
        assert (request.from_, request.to, request.form) == ("server", f"asked-{form}", FORM_CODE[form])
        response = await c.request("echo@v1/ask", {"method": "client@v1/name"})
        assert response.data["receipt"] == "my-receipt"
        # No handler on the client: it answers METHOD_NOT_FOUND, which the app's send_request raises.
        with pytest.raises(WSAError) as info:
            await c.request("echo@v1/ask", {"method": "client@v1/unknown"})
        assert info.value.code == "METHOD_NOT_FOUND"


@aio
async def test_server_broadcast(start_gateway) -> None:
    gw = start_gateway(app=ECHO_APP)
    clients = [await logged_in(gw.url, f"sb-{i}", FORMS[i % 2]) for i in range(3)]
    try:
        response = await clients[0].request("echo@v1/broadcast", {"method": "news@v1/flash", "params": RICH_PARAMS})
        assert response.data == {"sent": 3}
        for i, c in enumerate(clients):
            event = await c.next_event("news@v1/flash")
            assert (event.from_, event.to, event.params) == ("server", "client", RICH_PARAMS)
            assert event.form == FORM_CODE[FORMS[i % 2]]
    finally:
        for c in clients:
            await c.close()


@aio
async def test_integers_past_64_bits_survive(start_gateway) -> None:
    """Params are passed through untouched: a 70-bit integer must come back exact."""
    gw = start_gateway(app=ECHO_APP)
    big = {"n": 2**70, "m": -(2**65) - 1}
    async with await logged_in(gw.url, "big-a") as a, await logged_in(gw.url, "big-b", "compact") as b:
        b.on_request("calc@v1/echo")(lambda msg: msg.params)
        relayed = await a.request("calc@v1/echo", big, to="big-b")
        assert relayed.data == big
        # The app's handler gets the exact integers and returns them as data.
        app_echo = await a.request("echo@v1/echo", big)
        assert app_echo.data == big


# ---- event loops, concurrency ----


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@aio
async def test_many_concurrent_requests(gateway, loop: str) -> None:
    async with (
        await logged_in(gateway.url, f"cc-a-{loop}", "compact") as a,
        await logged_in(gateway.url, f"cc-b-{loop}") as b,
    ):

        @b.on_request("calc@v1/square")
        async def square(msg):
            await asyncio.sleep(0.001 * (msg.params[0] % 5))
            return msg.params[0] ** 2

        results = await asyncio.gather(*(a.request("calc@v1/square", [i], to=f"cc-b-{loop}") for i in range(200)))
        assert [r.data for r in results] == [i * i for i in range(200)]
        assert a.dropped_responses == 0


@aio
async def test_next_event_waits_by_method(gateway) -> None:
    async with await logged_in(gateway.url, "ne-a") as a, await logged_in(gateway.url, "ne-b") as b:
        waiting = asyncio.ensure_future(b.next_event("x@v1/second"))
        await a.send_event("x@v1/first", {"i": 1}, to="ne-b")
        await a.send_event("x@v1/second", {"i": 2}, to="ne-b")
        assert (await waiting).params == {"i": 2}
        assert (await b.next_event()).params == {"i": 1}
        with pytest.raises(asyncio.TimeoutError):
            await b.next_event(timeout=0.1)


# ---- framing: a scripted peer on a real socket ----


class ScriptedPeer(WSListener):
    """On the client's first message: a fragmented request (a PING among the fragments) and an
    unmatched response. Records what the client sends after that."""

    def __init__(self, received: asyncio.Queue) -> None:
        super().__init__()
        self.received = received
        self.started = False

    def play(self, transport) -> None:
        request = (
            b'{"f":"s","t":"frag","y":"q","i":"abc12","p":{"m":"frag@v1/join","p":{"parts":["'
            + "\u00fc".encode() * 3000
            + b'"]}}}'
        )
        cut1, cut2 = 1000, 1001  # the second cut falls inside a two-byte character
        transport.send(WSMsgType.TEXT, request[:cut1], fin=False)
        transport.send(WSMsgType.CONTINUATION, request[cut1:cut2], fin=False)
        transport.send_ping(b"hello")
        transport.send(WSMsgType.CONTINUATION, request[cut2:], fin=True)
        transport.send(WSMsgType.TEXT, b'{"f":"s","t":"frag","y":"r","i":"zzz99","p":{"r":"s"}}')

    def on_ws_frame(self, transport, frame) -> None:
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            if not self.started:
                self.started = True
                self.play(transport)
            else:
                self.received.put_nowait(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@aio
async def test_fragmented_messages_are_reassembled(loop: str) -> None:
    received: asyncio.Queue = asyncio.Queue()
    server = await ws_create_server(lambda request: ScriptedPeer(received), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        c = await Client.connect(f"ws://127.0.0.1:{port}", form="compact", negotiate="query", client_id="frag")
        joined = asyncio.get_running_loop().create_future()

        @c.on_request("frag@v1/join")
        def join(msg):
            joined.set_result(msg)
            return {"length": len(msg.params["parts"][0])}

        await c.send_event("frag@v1/start")

        msg = await asyncio.wait_for(joined, 5)
        assert msg.params == {"parts": ["ü" * 3000]}
        reply = await asyncio.wait_for(received.get(), 5)
        assert reply == b'{"f":"frag","t":"s","y":"r","i":"abc12","p":{"r":"s","d":{"length":3000}}}'
        await asyncio.sleep(0.05)
        assert c.dropped_responses == 1 and c.stats["bad_messages"] == 0
        await c.close()
    finally:
        server.close()
