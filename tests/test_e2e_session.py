"""End to end, docs/protocol.md section 4 (session and identity) and the graceful stop.

Real ``wsa-fast serve`` processes in each auth mode, spoken to with ``websockets``.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import time

import jwt
import pytest
from apps.protocol_app import LOGIN_DELAY, PASSWORD
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from gateway_process import WSA_FAST
from wsa_ws import (
    FORMS,
    NEGOTIATIONS,
    ROOT,
    Clients,
    InvalidStatus,
    aio,
    close_code,
    encode,
    expect_error_event,
    expect_fail,
    expect_response,
    new_id,
    open_ws,
    running_server,
    settled,
    uid,
)

APP = "tests.apps.protocol_app:app"
JWT_SECRET = "e2e-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def dev_server():
    with running_server("--app", APP, "--request-timeout", "5") as srv:
        yield srv


@pytest.fixture(scope="module")
def reject_server():
    with running_server("--duplicate-login", "reject") as srv:
        yield srv


TOKENS = [(f"tok-{i}-{secrets.token_hex(8)}", uid("tu")) for i in range(60)]
_token_slots = iter(TOKENS)


def token_user() -> tuple[str, str]:
    """A (token, client id) pair from the token file that no other test uses."""
    return next(_token_slots)


@pytest.fixture(scope="module")
def tokens_server(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "tokens.txt"
    lines = ["# TOKEN CLIENT_ID", ""] + [f"{token} {cid}" for token, cid in TOKENS]
    path.write_text("\n".join(lines) + "\n")
    with running_server("--auth", f"tokens:{path}") as srv:
        yield srv


@pytest.fixture(scope="module")
def jwt_server():
    with running_server("--auth", "jwt", "--jwt-secret", JWT_SECRET) as srv:
        yield srv


@pytest.fixture(scope="module")
def auth_app_server():
    with running_server("--app", "tests.apps.protocol_app:auth_app") as srv:
        yield srv


def make_jwt(sub: str, *, exp_in: float = 300, secret: str = JWT_SECRET, **claims) -> str:
    body = {"sub": sub, **claims}
    if exp_in is not None:
        body["exp"] = int(time.time() + exp_in)
    return jwt.encode(body, secret, algorithm="HS256")


# ================================================================ anonymous connections (dev auth)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("how", NEGOTIATIONS)
@aio
async def test_ping_works_before_login(dev_server, form, how):
    async with Clients(dev_server) as cl:
        peer = await cl.open(form, how)
        id = await peer.request("server", "wsa@v1/ping", frm="")
        assert await peer.recv_raw() == encode(form, "server", "", "response", id, result="success")
        # Any valid client id is tolerated as from on a ping, and is whom the answer goes to.
        name = uid("pinger")
        id = await peer.request("server", "wsa@v1/ping", frm=name)
        expect_response(await peer.recv(), id=id, to=name)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("how", NEGOTIATIONS)
@aio
async def test_login_binds_the_requested_id(dev_server, form, how):
    async with Clients(dev_server) as cl:
        peer = await cl.open(form, how)
        me = uid("login")
        id = await peer.request("server", "auth@v1/login", frm=me)
        assert await peer.recv_raw() == encode(form, "server", me, "response", id, result="success", receipt=me)
        peer.cid = me
        await peer.ping()


@aio
async def test_login_accepts_the_longest_client_id(dev_server):
    async with Clients(dev_server) as cl:
        peer = await cl.open()
        me = ("L" + uid("x") + "-._:@" * 20)[:64]
        reply = await peer.login(me)
        expect_response(reply, id=reply["id"], to=me, receipt=me)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_dev_login_with_empty_from_is_permission_denied(dev_server, form):
    async with Clients(dev_server) as cl:
        peer = await cl.open(form)
        id = await peer.request("server", "auth@v1/login", frm="")
        expect_fail(await peer.recv(), "PERMISSION_DENIED", id=id, to="")
        await peer.ping()  # still anonymous, still open


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_second_login_with_the_same_id_is_already_authenticated(dev_server, form):
    async with Clients(dev_server) as cl:
        peer = await cl.open(form, login=uid("once"))
        id = await peer.request("server", "auth@v1/login", frm=peer.cid)
        expect_fail(await peer.recv(), "ALREADY_AUTHENTICATED", id=id, to=peer.cid)
        await peer.ping()  # still bound


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("asked", ["other", "empty"])
@aio
async def test_second_login_asking_another_id_is_already_authenticated(dev_server, form, asked):
    """A login's from is the id asked for (section 4), so a second login is ALREADY_AUTHENTICATED
    whatever it asks for, not a spoof."""
    async with Clients(dev_server) as cl:
        peer = await cl.open(form, login=uid("once"))
        other = uid("twice") if asked == "other" else ""
        id = await peer.request("server", "auth@v1/login", frm=other)
        expect_fail(await peer.recv(), "ALREADY_AUTHENTICATED", id=id, to=peer.cid)
        await peer.ping()  # still bound to the first id


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_anonymous_may_only_ping_and_log_in(dev_server, form):
    async with Clients(dev_server) as cl:
        (b,) = await cl.bound("verbose")
        anon = await cl.open(form)
        checks = [
            anon.request(b.cid, "chat@v1/send", {"x": 1}, frm=""),  # request to another client
            anon.event(b.cid, "chat@v1/typing", frm=""),  # event to another client
            anon.event("client", "chat@v1/hello", frm=""),  # broadcast
            anon.request("client", "chat@v1/hello", frm=""),
            anon.request("server", "test@v1/none", frm=""),  # a request to a handler
            anon.event("server", "test@v1/notify", {"tell": b.cid}, frm=""),  # an event to a handler
            anon.request("server", "nothing@v1/here", frm=""),
        ]
        for send in checks:
            id = await send
            expect_fail(await anon.recv(), "UNAUTHENTICATED", id=id, to="")
        await settled(anon, b)


@aio
async def test_anonymous_sender_naming_itself_is_answered_at_that_name(dev_server):
    async with Clients(dev_server) as cl:
        (b,) = await cl.bound("verbose")
        anon = await cl.open("compact")
        name = uid("claims")
        id = await anon.request(b.cid, "chat@v1/send", frm=name)
        expect_fail(await anon.recv(), "UNAUTHENTICATED", id=id, to=name)
        await settled(anon, b)


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_anonymous_response_is_an_error_event_unauthenticated(dev_server, form):
    async with Clients(dev_server) as cl:
        (b,) = await cl.bound("verbose")
        anon = await cl.open(form)
        id = new_id()
        await anon.respond(b.cid, id, receipt="x", frm="")
        expect_error_event(await anon.recv(), "UNAUTHENTICATED", to="", id=id)
        await settled(anon, b)
        await anon.ping()


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_dev_handshake_token_binds_the_connection(dev_server, form):
    async with Clients(dev_server) as cl:
        (b,) = await cl.bound("verbose")
        me = uid("hs")
        peer = await cl.open(form, query={"token": me})
        peer.cid = me
        await peer.ping()
        await peer.request(b.cid, "chat@v1/send")
        assert (await b.recv())["from"] == me


# ================================================================ duplicate logins


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_newer_login_replaces_the_older_connection_with_4001(dev_server, form):
    async with Clients(dev_server) as cl:
        me = uid("dup")
        older = await cl.open(form, login=me)
        (b,) = await cl.bound("compact")
        newer = await cl.open(form, login=me)
        code, before = await close_code(older.ws)
        assert code == 4001 and before == []
        assert older.ws.close_reason == "replaced"
        await newer.ping()
        id = await b.request(me, "chat@v1/send")
        assert (await newer.recv())["id"] == id
        await newer.respond(b.cid, id)
        expect_response(await b.recv(), frm=me, id=id, to=b.cid)


@pytest.fixture(scope="module")
def replacing_server():
    """A request_timeout below the 5 s the gateway waits for a closing handshake: GONE must not wait for it."""
    with running_server("--request-timeout", "2") as srv:
        yield srv


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_an_answer_in_before_the_replacement_reaches_the_requester(replacing_server, form):
    async with Clients(replacing_server) as cl:
        me = uid("dup")
        older = await cl.open(form, login=me)
        (a,) = await cl.bound("compact")
        id = await a.request(me, "chat@v1/send")
        assert (await older.recv())["id"] == id
        await older.respond(a.cid, id, receipt="in time")
        await older.ping()  # the answer was read before the newer login
        await cl.open(form, login=me)
        expect_response(await a.recv(), frm=me, id=id, to=a.cid, receipt="in time")
        assert (await close_code(older.ws))[0] == 4001
        await settled(a)  # and no GONE after it


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_a_request_pending_on_a_replaced_connection_is_gone_once_its_4001_is_out(replacing_server, form):
    """Once the 4001 is out the older connection is closed: nothing it sends is read any more, so what waits
    on it is GONE then, not when its closing handshake ends (up to 5 s if it does not read), nor TIMEOUT."""
    async with Clients(replacing_server) as cl:
        me = uid("dup")
        older = await cl.open(form, login=me)
        (a,) = await cl.bound("compact")
        id = await a.request(me, "chat@v1/send")
        assert (await older.recv())["id"] == id
        older.ws.transport.pause_reading()  # it does not see its 4001 yet, so it does not answer it
        await cl.open(form, login=me)
        await older.respond(a.cid, id, receipt="too late")  # sent after the 4001 went out: dropped
        expect_fail(await a.recv(), "GONE", id=id, to=a.cid)
        older.ws.transport.resume_reading()
        assert (await close_code(older.ws))[0] == 4001  # the gateway has read all it sent
        await settled(a)  # exactly one response: the late answer was not delivered


@aio
async def test_handshake_token_also_replaces_the_older_connection(dev_server):
    async with Clients(dev_server) as cl:
        me = uid("dup")
        older = await cl.open("verbose", login=me)
        newer = await cl.open("compact", query={"token": me})
        newer.cid = me
        code, _ = await close_code(older.ws)
        assert code == 4001
        await newer.ping()


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_reject_mode_answers_the_newer_login_with_conflict(reject_server, form):
    async with Clients(reject_server) as cl:
        me = uid("dup")
        first = await cl.open(form, login=me)
        second = await cl.open(form)
        id = await second.request("server", "auth@v1/login", frm=me)
        expect_fail(await second.recv(), "CONFLICT", id=id, to=me)
        await first.ping()  # the first keeps its id
        await second.ping()  # the second is still anonymous and open
        # ... and may log in as someone else.
        other = uid("other")
        reply = await second.login(other)
        expect_response(reply, id=reply["id"], to=other, receipt=other)
        id = await second.request(me, "chat@v1/send")
        assert (await first.recv())["id"] == id


@aio
async def test_reject_mode_refuses_a_handshake_token_for_a_connected_id_with_409(reject_server):
    async with Clients(reject_server) as cl:
        me = uid("dup")
        first = await cl.open("verbose", login=me)
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(reject_server, query={"token": me})
        assert refused.value.response.status_code == 409
        await first.ping()


# ================================================================ spoofing


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("spoof", ["other", "server", ""])
@aio
async def test_spoofed_from_is_permission_denied_and_not_delivered(dev_server, form, spoof):
    async with Clients(dev_server) as cl:
        a, b, c = await cl.bound(form, "verbose", "compact")
        frm = {"other": b.cid, "server": "server", "": ""}[spoof]
        id = await a.request(c.cid, "chat@v1/send", {"x": 1}, frm=frm)
        expect_fail(await a.recv(), "PERMISSION_DENIED", id=id, to=a.cid)
        id = await a.event(c.cid, "chat@v1/typing", frm=frm)
        expect_fail(await a.recv(), "PERMISSION_DENIED", id=id, to=a.cid)
        id = await a.event("client", "chat@v1/hello", frm=frm)
        expect_fail(await a.recv(), "PERMISSION_DENIED", id=id, to=a.cid)
        id = await a.request("server", "test@v1/none", frm=frm)
        expect_fail(await a.recv(), "PERMISSION_DENIED", id=id, to=a.cid)
        await settled(a, b, c)
        await a.ping()  # still open and bound


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("spoof", ["other", "server", ""])
@aio
async def test_spoofed_response_is_an_error_event_and_not_delivered(dev_server, form, spoof):
    async with Clients(dev_server) as cl:
        a, b, c = await cl.bound(form, "verbose", "compact")
        # c really waits for an answer from b; a pretends to be b (or the server).
        id = await c.request(b.cid, "chat@v1/send")
        await b.recv()
        frm = {"other": b.cid, "server": "server", "": ""}[spoof]
        await a.respond(c.cid, id, receipt="spoofed", frm=frm)
        expect_error_event(await a.recv(), "PERMISSION_DENIED", to=a.cid, id=id)
        await settled(a, c)
        await a.ping()
        await b.respond(c.cid, id, receipt="real")
        expect_response(await c.recv(), frm=b.cid, id=id, to=c.cid, receipt="real")


# ================================================================ token file


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape", ["object", "array"])
@pytest.mark.parametrize("named", [False, True])
@aio
async def test_token_file_login(tokens_server, form, shape, named):
    token, cid = token_user()
    async with Clients(tokens_server) as cl:
        peer = await cl.open(form)
        params = {"token": token} if shape == "object" else [token]
        id = await peer.request("server", "auth@v1/login", params, frm=cid if named else "")
        expect_response(await peer.recv(), id=id, to=cid, receipt=cid)
        peer.cid = cid
        await peer.ping()


@pytest.mark.parametrize(
    "params",
    [
        {"token": "no-such-token"},
        ["no-such-token"],
        {"token": ""},
        {"password": "x"},
        [],
        ["a", "b"],
        None,
    ],
)
@aio
async def test_token_file_bad_credentials_are_permission_denied(tokens_server, params):
    async with Clients(tokens_server) as cl:
        peer = await cl.open("verbose")
        id = await peer.request("server", "auth@v1/login", *([] if params is None else [params]), frm="")
        expect_fail(await peer.recv(), "PERMISSION_DENIED", id=id, to="")
        await peer.ping()


@aio
async def test_token_file_login_for_another_id_than_the_token_names_is_denied(tokens_server):
    token, cid = token_user()
    _, other = token_user()
    async with Clients(tokens_server) as cl:
        peer = await cl.open("compact")
        id = await peer.request("server", "auth@v1/login", {"token": token}, frm=other)
        expect_fail(await peer.recv(), "PERMISSION_DENIED", id=id, to=other)
        # Dev-style login without credentials does not work either.
        id = await peer.request("server", "auth@v1/login", frm=cid)
        expect_fail(await peer.recv(), "PERMISSION_DENIED", id=id, to=cid)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("where", ["bearer", "query"])
@aio
async def test_token_file_handshake_binds_and_messages_flow_without_login(tokens_server, form, where):
    token, cid = token_user()
    token_b, cid_b = token_user()
    async with Clients(tokens_server) as cl:
        kw = {"headers": {"Authorization": f"Bearer {token}"}} if where == "bearer" else {"query": {"token": token}}
        a = await cl.open(form, **kw)
        a.cid = cid
        b = await cl.open("compact", headers={"Authorization": f"Bearer {token_b}"})
        b.cid = cid_b
        await a.ping()
        id = await a.request(cid_b, "chat@v1/send", {"x": 1})
        got = await b.recv()
        assert got["from"] == cid and got["id"] == id and got["payload"]["params"] == {"x": 1}
        await b.respond(cid, id, receipt="ok")
        expect_response(await a.recv(), frm=cid_b, id=id, to=cid, receipt="ok")
        id = await a.request("server", "auth@v1/login", {"token": token}, frm=cid)
        expect_fail(await a.recv(), "ALREADY_AUTHENTICATED", id=id, to=cid)


@aio
async def test_token_file_handshake_header_wins_over_query(tokens_server):
    token_a, cid_a = token_user()
    token_b, _ = token_user()
    async with Clients(tokens_server) as cl:
        peer = await cl.open("verbose", headers={"Authorization": f"Bearer {token_a}"}, query={"token": token_b})
        peer.cid = cid_a
        await peer.ping()
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(tokens_server, headers={"Authorization": "Bearer not-a-token"}, query={"token": token_b})
    assert refused.value.response.status_code == 401


@pytest.mark.parametrize("where", ["bearer", "query"])
@aio
async def test_token_file_bad_handshake_token_is_http_401(tokens_server, where):
    kw = {"headers": {"Authorization": "Bearer nope"}} if where == "bearer" else {"query": {"token": "nope"}}
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(tokens_server, **kw)
    assert refused.value.response.status_code == 401


# ================================================================ JWT


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("named", [False, True])
@aio
async def test_jwt_login_with_a_valid_token(jwt_server, form, named):
    me = uid("jwt")
    async with Clients(jwt_server) as cl:
        peer = await cl.open(form)
        id = await peer.request("server", "auth@v1/login", {"token": make_jwt(me)}, frm=me if named else "")
        expect_response(await peer.recv(), id=id, to=me, receipt=me)
        peer.cid = me
        await peer.ping()


@pytest.mark.parametrize("case", ["expired", "wrong-secret", "no-exp", "alg-none", "garbage", "bad-sub"])
@aio
async def test_jwt_login_with_a_bad_token_is_permission_denied(jwt_server, case):
    me = uid("jwt")
    token = {
        "expired": lambda: make_jwt(me, exp_in=-60),
        "wrong-secret": lambda: make_jwt(me, secret="not-the-secret-" + "x" * 20),
        "no-exp": lambda: make_jwt(me, exp_in=None),
        "alg-none": lambda: jwt.encode({"sub": me, "exp": int(time.time()) + 300}, None, algorithm="none"),
        "garbage": lambda: "eyJ.not.a-jwt",
        "bad-sub": lambda: make_jwt("server"),
    }[case]()
    async with Clients(jwt_server) as cl:
        peer = await cl.open("verbose")
        id = await peer.request("server", "auth@v1/login", [token], frm="")
        expect_fail(await peer.recv(), "PERMISSION_DENIED", id=id, to="")
        await peer.ping()


@aio
async def test_jwt_handshake_bearer_binds_and_a_bad_one_is_401(jwt_server):
    me = uid("jwt")
    async with Clients(jwt_server) as cl:
        peer = await cl.open("compact", headers={"Authorization": f"Bearer {make_jwt(me)}"})
        peer.cid = me
        await peer.ping()
    for bad in (make_jwt(me, exp_in=-60), make_jwt(me, secret="y" * 40)):
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(jwt_server, headers={"Authorization": f"Bearer {bad}"})
        assert refused.value.response.status_code == 401


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_jwt_public_key_algorithms(tmp_path, algorithm):
    def new_key():
        if algorithm == "RS256":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return ec.generate_private_key(ec.SECP256R1())

    key, stranger = new_key(), new_key()
    pem = tmp_path / "public.pem"
    pem.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    me = uid("pk")
    exp = int(time.time()) + 300

    @aio
    async def run():
        async with Clients(server) as cl:
            peer = await cl.open("verbose")
            forged = jwt.encode({"sub": me, "exp": exp}, stranger, algorithm=algorithm)
            id = await peer.request("server", "auth@v1/login", {"token": forged}, frm="")
            expect_fail(await peer.recv(), "PERMISSION_DENIED", id=id, to="")
            # An HS256 token made with the public key as its secret must not pass either.
            confused = jwt.encode({"sub": me, "exp": exp}, "x" * 32, algorithm="HS256")
            id = await peer.request("server", "auth@v1/login", {"token": confused}, frm="")
            expect_fail(await peer.recv(), "PERMISSION_DENIED", id=id, to="")
            good = jwt.encode({"sub": me, "exp": exp}, key, algorithm=algorithm)
            id = await peer.request("server", "auth@v1/login", {"token": good}, frm="")
            expect_response(await peer.recv(), id=id, to=me, receipt=me)
            bearer = await cl.open("compact", headers={"Authorization": f"Bearer {good}"})
            bearer.cid = me
            await bearer.ping()
            code, _ = await close_code(peer.ws)  # the older binding of the same id is replaced
            assert code == 4001

    with running_server("--auth", "jwt", "--jwt-public-key", str(pem)) as server:
        run()


# ================================================================ where dev auth is the default


def test_dev_auth_is_the_default_on_loopback_with_a_warning(dev_server):
    assert "WARNING" in dev_server.log and "dev auth" in dev_server.log


def test_dev_auth_is_refused_as_a_default_off_loopback():
    done = subprocess.run(
        [WSA_FAST, "serve", "--host", "0.0.0.0", "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "--auth" in done.stderr and "listening" not in done.stderr


# ================================================================ an app's asynchronous authenticator


@aio
async def test_app_authenticator_login_and_already_authenticated_while_pending(auth_app_server):
    async with Clients(auth_app_server) as cl:
        peer = await cl.open("compact")
        me = uid("slow")
        first = await peer.request("server", "auth@v1/login", {"password": PASSWORD}, frm=me)
        second = await peer.request("server", "auth@v1/login", {"password": PASSWORD}, frm=me)
        expect_fail(await peer.recv(), "ALREADY_AUTHENTICATED", id=second, to=me)
        expect_response(await peer.recv(timeout=LOGIN_DELAY + 3), id=first, to=me, receipt=me)
        peer.cid = me
        await peer.ping()
        bad = await cl.open("verbose")
        id = await bad.request("server", "auth@v1/login", {"password": "wrong"}, frm=uid("slow"))
        reply = await bad.recv(timeout=LOGIN_DELAY + 3)
        expect_fail(reply, "PERMISSION_DENIED", id=id, to=reply["to"])


# ================================================================ graceful stop


def test_sigterm_closes_every_client_with_1001_and_exits_0():
    @aio
    async def run(server):
        async with Clients(server) as cl:
            a, b = await cl.bound("verbose", "compact")
            anonymous = await cl.open("compact", "query")
            server.proc.send_signal(signal.SIGTERM)
            for peer in (a, b, anonymous):
                code, _ = await close_code(peer.ws, timeout=10)
                assert code == 1001, (peer.cid, code)

    with running_server() as server:
        run(server)
        assert server.wait(15) == 0


def test_draining_refuses_new_requests_and_lets_in_flight_ones_finish():
    @aio
    async def run(server):
        async with Clients(server) as cl:
            a, b = await cl.bound("verbose", "compact")
            slow = await a.request("server", "test@v1/slow", {"seconds": 2.0})
            await a.ping()  # the slow request is in its handler (its answer comes 2 s later)
            server.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(server.wait_for_log, "stopping: draining", 10)
            id = await b.request("server", "wsa@v1/ping")
            expect_fail(await b.recv(), "UNAVAILABLE", id=id, to=b.cid)
            id = await b.request(a.cid, "chat@v1/send")
            expect_fail(await b.recv(), "UNAVAILABLE", id=id, to=b.cid)
            expect_response(await a.recv(), id=slow, to=a.cid, receipt="slept")
            for peer in (a, b):
                code, _ = await close_code(peer.ws, timeout=10)
                assert code == 1001

    with running_server("--drain-timeout", "5", "--app", APP) as server:
        run(server)
        assert server.wait(15) == 0
