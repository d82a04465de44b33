"""End to end, hostile input: docs/protocol.md section 3 and the close codes.

Every invalid message gets exactly the documented answer (fail ``INVALID_MESSAGE`` with the
id when one is readable and the message is not a response, else the ``wsa@v1/error``
event), and the same connection still answers a ping afterwards. Then the limits: bad
messages in a row (1008), message size (1009), fragments, binary frames (slow readers: test_slow_consumer.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from wsa_ws import (
    ABSENT,
    FORMS,
    Clients,
    Raw,
    aio,
    close_code,
    dumps,
    encode,
    envelope,
    expect_error_event,
    expect_fail,
    expect_response,
    new_id,
    payload_dict,
    running_server,
    settled,
    uid,
)

ID = "bad01"
PING = "wsa@v1/ping"
OTHER = {"verbose": "compact", "compact": "verbose"}
KEYS = {
    "from": "f",
    "to": "t",
    "type": "y",
    "id": "i",
    "payload": "p",
    "method": "m",
    "params": "p",
    "result": "r",
    "receipt": "c",
    "code": "c",
    "data": "d",
}
WORDS = {"server": "s", "client": "c", "request": "q", "response": "r", "event": "e", "success": "s", "fail": "f"}


def key(form: str, name: str) -> str:
    return name if form == "verbose" else KEYS[name]


def word(form: str, name: str) -> str:
    return name if form == "verbose" else WORDS[name]


def ping(form: str, me: str, id: Any = ID, **payload: Any) -> dict:
    """A ping request to the server, as a dict in ``form`` (payload overridable)."""
    return envelope(form, me, "server", "request", id, payload_dict(form, **(payload or {"method": PING})))


def answer(form: str, me: str, id: Any = ID, **payload: Any) -> dict:
    """A response from ``me`` to some client, as a dict in ``form``."""
    return envelope(form, me, "someone-else", "response", id, payload_dict(form, **payload))


def put(d: dict, k: str, v: Any) -> dict:
    d = dict(d)
    d[k] = v
    return d


def drop(d: dict, k: str) -> dict:
    d = dict(d)
    del d[k]
    return d


def rename(d: dict, old: str, new: str) -> dict:
    return {new if k == old else k: v for k, v in d.items()}


def put_payload(form: str, d: dict, k: str, v: Any) -> dict:
    p = dict(d[key(form, "payload")])
    p[key(form, k)] = v
    return put(d, key(form, "payload"), p)


def duplicate(text: str, fragment: str) -> str:
    """Insert ``fragment`` (a '"k":v' pair) right after the opening brace of the object ``text``."""
    return "{" + fragment + "," + text[1:]


# ---------------------------------------------------------------- the cases
# Each builder takes (form, me) and returns (data to send, expected), expected being
# ("fail", id) | ("error", id or None) | ("ok", id) | ("code", CODE, id).


def FAIL(id: str = ID) -> tuple:
    return ("fail", id)


def ERROR(id: Any = None) -> tuple:
    return ("error", id)


def OK(id: str = ID) -> tuple:
    return ("ok", id)


CASES: list[tuple[str, tuple, Any]] = []


def case(name: str, forms: tuple = FORMS):
    def register(fn):
        CASES.append((name, forms, fn))
        return fn

    return register


def cases(name: str, values: list, forms: tuple = FORMS):
    """Register ``fn(form, me, value)`` once per value."""

    def register(fn):
        for i, value in enumerate(values):
            CASES.append((f"{name}[{i}:{str(value)[:24]}]", forms, lambda f, m, v=value: fn(f, m, v)))
        return fn

    return register


# -- the envelope


@case("unknown_envelope_key")
def _(f, me):
    return dumps(put(ping(f, me), "extra", 1)), FAIL()


@case("unknown_envelope_key_uppercase")
def _(f, me):
    return dumps(put(ping(f, me), key(f, "from").upper() + "X", me)), FAIL()


@cases("missing_field", ["from", "to", "type", "payload"])
def _(f, me, name):
    return dumps(drop(ping(f, me), key(f, name))), FAIL()


@case("missing_id")
def _(f, me):
    return dumps(drop(ping(f, me), key(f, "id"))), ERROR()


@cases("mixed_forms", ["from", "to", "type", "payload"])
def _(f, me, name):
    return dumps(rename(ping(f, me), key(f, name), key(OTHER[f], name))), FAIL()


@case("mixed_forms_id_key")
def _(f, me):
    # The id is still readable under the other form's key.
    return dumps(rename(ping(f, me), key(f, "id"), key(OTHER[f], "id"))), FAIL()


@case("payload_keys_of_the_other_form")
def _(f, me):
    return dumps(put(ping(f, me), key(f, "payload"), payload_dict(OTHER[f], method=PING))), FAIL()


@case("capital_P_in_verbose_envelope", forms=("verbose",))
def _(f, me):
    return dumps(rename(ping(f, me), "payload", "P")), FAIL()


@cases("from_wrong_type", [1, None, [], {}, True])
def _(f, me, v):
    return dumps(put(ping(f, me), key(f, "from"), v)), FAIL()


@cases("to_wrong_type", [1, None, ["server"]])
def _(f, me, v):
    return dumps(put(ping(f, me), key(f, "to"), v)), FAIL()


@cases("type_wrong_type", [1, None, ["request"]])
def _(f, me, v):
    return dumps(put(ping(f, me), key(f, "type"), v)), FAIL()


@cases("type_unknown", ["g", "get", "REQUEST", "", "notify"])
def _(f, me, v):
    return dumps(put(ping(f, me), key(f, "type"), v)), FAIL()


@case("type_of_the_other_form")
def _(f, me):
    return dumps(put(ping(f, me), key(f, "type"), word(OTHER[f], "request"))), FAIL()


@cases("payload_wrong_type", ["x", [], None, 1, True])
def _(f, me, v):
    return dumps(put(ping(f, me), key(f, "payload"), v)), FAIL()


@cases("method_wrong_type", [1, None, [PING], {"m": PING}])
def _(f, me, v):
    return dumps(ping(f, me, method=v)), FAIL()


@cases("method_missing", [{}, {"params": {}}])
def _(f, me, p):
    return dumps(ping(f, me, **p) if p else put(ping(f, me), key(f, "payload"), {})), FAIL()


BAD_METHODS = [
    "ping",
    "wsa@1/ping",
    "wsa@v/ping",
    "wsa@v1/",
    "wsa@v1",
    "1wsa@v1/ping",
    "_wsa@v1/ping",
    "wsa@v1/.ping",
    "wsa@v1/p ing",
    "wsa@v1/ping?",
    "wsa @v1/ping",
    "wsa@V1/ping",
    "wsa@v1//",
    "",
    "a@v1/" + "b" * 124,
    "wsa@v1/pïng",
]


@cases("method_bad", BAD_METHODS)
def _(f, me, v):
    return dumps(ping(f, me, method=v)), FAIL()


@cases("params_not_object_or_array", [5, "s", True, False, None, 1.5])
def _(f, me, v):
    return dumps(ping(f, me, method=PING, params=v)), FAIL()


@case("unknown_payload_key")
def _(f, me):
    return dumps(put(ping(f, me), key(f, "payload"), {key(f, "method"): PING, "extra": 1})), FAIL()


@cases("request_payload_with_response_keys", ["result", "receipt", "code", "data"])
def _(f, me, name):
    value = {"result": word(f, "success"), "receipt": "r", "code": "X", "data": 1}[name]
    return dumps(put_payload(f, ping(f, me), name, value)), FAIL()


@case("event_payload_with_result")
def _(f, me):
    d = envelope(f, me, "server", "event", ID, payload_dict(f, method="test@v1/x", result=word(f, "success")))
    return dumps(d), FAIL()


@cases("from_not_a_client_id", ["bad id!", "x" * 65, "ünï", "a/b", "a b", "tab\t"])
def _(f, me, v):
    return dumps(put(ping(f, me), key(f, "from"), v)), FAIL()


@cases("from_reserved_word", ["client", "server", "other-client"])
def _(f, me, which):
    # The broadcast word of the form, and the other form's server and client words.
    v = {"client": word(f, "client"), "server": word(OTHER[f], "server"), "other-client": word(OTHER[f], "client")}
    return dumps(put(ping(f, me), key(f, "from"), v[which])), FAIL()


@case("from_server_word_of_the_other_form")
def _(f, me):
    return dumps(put(ping(f, me), key(f, "from"), word(OTHER[f], "server"))), FAIL()


@cases("to_not_a_client_id", ["bad id!", "x" * 65, "a b"])
def _(f, me, v):
    return dumps(put(ping(f, me), key(f, "to"), v)), FAIL()


@case("to_server_word_of_the_other_form")
def _(f, me):
    return dumps(put(ping(f, me), key(f, "to"), word(OTHER[f], "server"))), FAIL()


BAD_READABLE_IDS = [
    "ABCDE",
    "abcd",
    "abcdef",
    "abc-d",
    "abc d",
    "2025-13-01T00:00:00Z",
    "2025-00-14T11:27:31Z",
    "2025-05-00T11:27:31Z",
    "2025-05-32T11:27:31Z",
    "2025-05-14T24:00:00Z",
    "2025-05-14T11:60:00Z",
    "2025-05-14T11:27:61Z",
    "2025-05-14T11:27:31",
    "2025-05-14T11:27:31.1234567890Z",
    "2025-05-14T11:27:31.Z",
    "2025-05-14 11:27:31Z",
    "2025-05-14T11:27:31+24:00",
    "2025-05-14T11:27:31+08:60",
    "2025-05-14T11:27:31+0800",
    "2025-05-14T11:27:31z",
    "20250514T112731Z",
    "2025-5-14T11:27:31Z",
    "x" * 64,
]


@cases("id_bad_but_readable", BAD_READABLE_IDS)
def _(f, me, v):
    return dumps(ping(f, me, id=v)), FAIL(v)


@cases("id_unreadable", ["", "x" * 65, "abc\u0001d", "ééééé", "abc\u007fd"])
def _(f, me, v):
    return dumps(ping(f, me, id=v)), ERROR()


@cases("id_wrong_type", [12345, None, ["bad01"], {"i": "bad01"}, 1.5])
def _(f, me, v):
    return dumps(ping(f, me, id=v)), ERROR()


@cases("duplicate_envelope_key", ["id", "from", "to", "type", "payload"])
def _(f, me, name):
    text = dumps(ping(f, me))
    value = {
        "id": "dupid",
        "from": me,
        "to": word(f, "server"),
        "type": word(f, "request"),
        "payload": payload_dict(f, method=PING),
    }[name]
    # The duplicate comes second, so the first id stays readable.
    k = key(f, name)
    return text[:-1] + "," + json.dumps(k) + ":" + dumps(value) + "}", FAIL()


@case("duplicate_id_first_one_answers")
def _(f, me):
    return duplicate(dumps(ping(f, me, id="ccccc")), '%s:"first"' % json.dumps(key(f, "id"))), FAIL("first")


@case("duplicate_payload_key")
def _(f, me):
    p = '{%s:"%s",%s:"%s"}' % (json.dumps(key(f, "method")), PING, json.dumps(key(f, "method")), PING)
    return dumps(put(ping(f, me), key(f, "payload"), Raw(p))), FAIL()


# -- responses are never answered by a response


@cases("response_result_bad", [ABSENT, "ok", 1, None, "SUCCESS"])
def _(f, me, v):
    return dumps(answer(f, me, result=v)), ERROR(ID)


@cases("response_result_of_the_other_form", ["success", "fail"])
def _(f, me, result):
    payload = {key(f, "result"): word(OTHER[f], result)}
    if result == "fail":
        payload[key(f, "code")] = "NOPE"
    return dumps(put(answer(f, me), key(f, "payload"), payload)), ERROR(ID)


@case("response_fail_without_code")
def _(f, me):
    return dumps(answer(f, me, result=word(f, "fail"))), ERROR(ID)


@cases("response_fail_bad_code", ["bad_code", "1ABC", "A" * 65, "", 5, None, "ABC-D", "_ABC", "ÄBC"])
def _(f, me, v):
    return dumps(answer(f, me, result=word(f, "fail"), code=v)), ERROR(ID)


@case("response_receipt_on_fail", forms=("verbose",))
def _(f, me):
    return dumps(answer(f, me, result="fail", code="NOPE", receipt="r")), ERROR(ID)


@case("response_code_on_success", forms=("verbose",))
def _(f, me):
    return dumps(answer(f, me, result="success", code="NOPE")), ERROR(ID)


@cases("response_receipt_wrong_type", [5, [], {}, True])
def _(f, me, v):
    return dumps(answer(f, me, result=word(f, "success"), receipt=v)), ERROR(ID)


@cases("response_with_request_keys", ["method", "params"])
def _(f, me, name):
    value = {"method": PING, "params": {}}[name]
    return dumps(put_payload(f, answer(f, me, result=word(f, "success")), name, value)), ERROR(ID)


@case("response_unknown_payload_key")
def _(f, me):
    return dumps(put(answer(f, me), key(f, "payload"), {key(f, "result"): word(f, "success"), "x": 1})), ERROR(ID)


@case("response_unknown_envelope_key")
def _(f, me):
    return dumps(put(answer(f, me, result=word(f, "success")), "extra", 1)), ERROR(ID)


@case("response_missing_id")
def _(f, me):
    return dumps(drop(answer(f, me, result=word(f, "success")), key(f, "id"))), ERROR()


@case("response_bad_id")
def _(f, me):
    return dumps(answer(f, me, id="ABCDE", result=word(f, "success"))), ERROR("ABCDE")


@case("response_bad_to")
def _(f, me):
    return dumps(put(answer(f, me, result=word(f, "success")), key(f, "to"), "bad id!")), ERROR(ID)


# -- not JSON, not strict JSON, not UTF-8, not an object


def ping_text(f: str, me: str, params: str, id: str = ID) -> str:
    return dumps(ping(f, me, id, method=PING, params=Raw(params)))


@cases(
    "params_not_strict_json",
    [
        '{"x":NaN}',
        '{"x":Infinity}',
        "[-Infinity]",
        "[01]",
        "[+1]",
        "[.5]",
        "[1.]",
        "[0x10]",
        "[tru]",
        '{"a":"\\x41"}',
        '{"a":"\t"}',
        '{"a":"\u0001"}',
        "[1,]",
        '{"a":1,}',
        "{'a':1}",
        "{a:1}",
        "[1 2]",
        '{"a" 1}',
        '["\\ud800\\u"]',
        "[1]]",
        "[[1]",
    ],
)
def _(f, me, params):
    return ping_text(f, me, params), ERROR()


@cases("trailing_content", ["x", "{}", ",", "]", "}", "\u0000", " 1", "//c"])
def _(f, me, tail):
    return dumps(ping(f, me)) + tail, ERROR()


@case("bom_in_text_frame")
def _(f, me):
    return "\ufeff" + dumps(ping(f, me)), ERROR()


@case("bom_in_binary_frame")
def _(f, me):
    return b"\xef\xbb\xbf" + dumps(ping(f, me)).encode(), ERROR()


@cases(
    "invalid_utf8_in_binary_frame",
    [b"\xff", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xf4\x90\x80\x80"],
)
def _(f, me, bad):
    text = ping_text(f, me, '["@@"]').encode()
    return text.replace(b"@@", bad), ERROR()


@case("invalid_utf8_in_the_id")
def _(f, me):
    return dumps(ping(f, me, id="ab@@c")).encode().replace(b"@@", b"\xff"), ERROR()


@cases("nested_deeper_than_128", ["array", "object", "mixed"])
def _(f, me, kind):
    # The envelope is level 1, payload 2, params 3: 127 levels inside params make 129.
    return ping_text(f, me, nest(kind, 127)), ERROR()


@case("data_nested_deeper_than_128")
def _(f, me):
    return dumps(answer(f, me, result=word(f, "success"), data=Raw(nest("array", 127)))), ERROR()


@cases("not_an_object", ["[]", '"text"', "5", "null", "true", "[{}]", '"{\\"from\\":1}"'])
def _(f, me, text):
    return text, ERROR()


@case("a_message_inside_an_array")
def _(f, me):
    return "[" + dumps(ping(f, me)) + "]", ERROR()


@cases("empty_or_blank", ["", "   ", "\n", b""])
def _(f, me, data):
    return data, ERROR()


@case("truncated")
def _(f, me):
    return dumps(ping(f, me))[:-1], ERROR()


@case("two_messages_in_one")
def _(f, me):
    return dumps(ping(f, me)) + dumps(ping(f, me, id="other")), ERROR()


# -- valid edge cases: accepted, answered by the ping's success

GOOD_IDS = [
    "2025-05-14T11:27:31.536370717+08:00",
    "2025-05-14T11:27:31Z",
    "2025-05-14T11:27:31.5-05:00",
    "2016-12-31T23:59:60Z",
    "2025-01-01T00:00:00.000000000+00:00",
    "00000",
    "zzzzz",
    "a1b2c",
    "2025-12-31T23:59:59.123456789-23:59",
]


@cases("good_id", GOOD_IDS)
def _(f, me, v):
    return dumps(ping(f, me, id=v)), OK(v)


@cases("surrounding_whitespace", [(" ", ""), ("", "\n"), ("\r\n\t ", " \t\r\n")])
def _(f, me, ws):
    return ws[0] + dumps(ping(f, me)) + ws[1], OK()


@case("whitespace_inside")
def _(f, me):
    return json.dumps(ping(f, me), indent=2), OK()


@case("keys_in_another_order")
def _(f, me):
    d = ping(f, me, method=PING, params={"b": 1})
    return dumps(dict(reversed(list(d.items())))), OK()


@cases("params_accepted", ["{}", "[]", '{"a":[1,{"b":null}],"c":"\\u00e9\\n"}', "[true,false,null,-1.5e-3]"])
def _(f, me, params):
    return ping_text(f, me, params), OK()


@cases("nested_exactly_128", ["array", "object"])
def _(f, me, kind):
    return ping_text(f, me, nest(kind, 126)), OK()


@case("utf8_in_a_binary_frame")
def _(f, me):
    return ping_text(f, me, '["héllo ✓ 😀"]').encode(), OK()


@case("compact_capital_P", forms=("compact",))
def _(f, me):
    return dumps(rename(ping(f, me), "p", "P")), OK()


@case("receipt_null_is_a_valid_response")
def _(f, me):
    # A valid response answering nothing is dropped: nothing comes back.
    return dumps(answer(f, me, result=word(f, "success"), receipt=None)), ("silent",)


@cases("method_unknown_but_valid", ["a@v1/" + "b" * 123, "A-b_C@v10/x.y/z-_", "x@v0/_"])
def _(f, me, method):
    assert len(method) <= 128
    return dumps(ping(f, me, method=method)), ("code", "METHOD_NOT_FOUND", ID)


def nest(kind: str, depth: int) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)
    # Arrays and objects alternating.
    return (
        "".join("[" if i % 2 == 0 else '{"a":' for i in range(depth))
        + "1"
        + "".join("]" if i % 2 == 0 else "}" for i in reversed(range(depth)))
    )


@pytest.fixture(scope="module")
def server():
    """A server with default settings (dev auth, 20 bad messages, 1 MiB)."""
    with running_server() as srv:
        yield srv


PARAMS = [pytest.param(name, form, build, id=f"{name}-{form}") for name, forms, build in CASES for form in forms]


@pytest.mark.parametrize("name, form, build", PARAMS)
@aio
async def test_hostile_message_gets_the_documented_answer_and_the_connection_lives(server, name, form, build):
    async with Clients(server) as cl:
        peer = await cl.open(form, login=uid("h"))
        data, expected = build(form, peer.cid)
        await peer.send_raw(data)
        if expected[0] == "fail":
            expect_fail(await peer.recv(), "INVALID_MESSAGE", id=expected[1], to=peer.cid)
        elif expected[0] == "error":
            message = await peer.recv()
            expect_error_event(
                message, "INVALID_MESSAGE", to=peer.cid, **({} if expected[1] is None else {"id": expected[1]})
            )
        elif expected[0] == "ok":
            expect_response(await peer.recv(), id=expected[1], to=peer.cid)
        elif expected[0] == "code":
            expect_fail(await peer.recv(), expected[1], id=expected[2], to=peer.cid)
        # Anything extra sent back would arrive before the ping's answer and fail it.
        await peer.ping()


# ---------------------------------------------------------------- whom a bad message is answered to


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_bad_message_from_an_anonymous_sender_is_answered_at_its_from(server, form):
    async with Clients(server) as cl:
        peer = await cl.open(form)
        name = uid("anon")
        for frm, to in ((name, name), ("bad id!", ""), ("", "")):
            await peer.send_raw(dumps(put(ping(form, frm), "extra", 1)))
            expect_fail(await peer.recv(), "INVALID_MESSAGE", id=ID, to=to)
        await peer.send_raw("{")
        expect_error_event(await peer.recv(), "INVALID_MESSAGE", to="")
        await peer.ping()


# ---------------------------------------------------------------- bad messages in a row

BAD_MIX = ["nope", '{"from":"x"}', "[]", "", '{"id":"abcde","extra":1}']


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_default_limit_closes_on_the_20th_bad_message_in_a_row(server, form):
    async with Clients(server) as cl:
        peer = await cl.open(form, login=uid("bad"))
        for _ in range(19):
            await peer.send_raw("not json")
        for _ in range(19):
            expect_error_event(await peer.recv(), "INVALID_MESSAGE", to=peer.cid)
        await peer.ping()  # a good message resets the count
        for i in range(19):
            await peer.send_raw(BAD_MIX[i % len(BAD_MIX)])
        for _i in range(19):
            await peer.recv()
        await peer.ping()
        for i in range(20):
            await peer.send_raw(BAD_MIX[i % len(BAD_MIX)])
        code, before = await close_code(peer.ws)
        assert code == 1008
        assert len(before) == 20


@pytest.fixture(scope="module")
def limits():
    with running_server("--max-bad-messages", "3", "--max-message-size", "4096") as srv:
        yield srv


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_max_bad_messages_closes_with_1008_on_the_third_in_a_row(limits, form):
    async with Clients(limits) as cl:
        peer = await cl.open(form, login=uid("bad"))
        me = peer.cid
        answerable = dumps(put(ping(form, me, id="ans01"), "extra", 1))
        # Two bad, a good one, two bad, a good one: never three in a row.
        for _round in range(3):
            await peer.send_raw("garbage")
            await peer.send_raw(answerable)
            expect_error_event(await peer.recv(), "INVALID_MESSAGE", to=me)
            expect_fail(await peer.recv(), "INVALID_MESSAGE", id="ans01", to=me)
            await peer.ping()
        # Both kinds count; the third in a row is answered and then the connection closes.
        await peer.send_raw(answerable)
        await peer.send_raw(b"\xff")
        await peer.send_raw(answerable)
        code, before = await close_code(peer.ws)
        assert code == 1008
        got = [json.loads(m) for m in before]
        assert len(got) == 3, got


@aio
async def test_other_connections_do_not_share_the_bad_message_count(limits):
    async with Clients(limits) as cl:
        a = await cl.open("verbose", login=uid("bad"))
        b = await cl.open("compact", login=uid("bad"))
        for peer in (a, b, a, b):
            await peer.send_raw("x")
            await peer.recv()
        await a.ping()
        await b.ping()


# ---------------------------------------------------------------- sizes and fragments


def padded_ping(form: str, me: str, size: int, id: str = ID) -> str:
    """A valid ping of exactly ``size`` bytes."""
    empty = ping_text(form, me, '{"pad":""}', id)
    text = ping_text(form, me, '{"pad":"%s"}' % ("x" * (size - len(empty))), id)
    assert len(text.encode()) == size
    return text


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_message_of_exactly_max_size_is_accepted(limits, form):
    async with Clients(limits) as cl:
        peer = await cl.open(form, login=uid("big"))
        await peer.send_raw(padded_ping(form, peer.cid, 4096))
        expect_response(await peer.recv(), id=ID, to=peer.cid)
        text = padded_ping(form, peer.cid, 4096, id="frag1")
        await peer.send_raw([text[i : i + 1000] for i in range(0, len(text), 1000)])
        expect_response(await peer.recv(), id="frag1", to=peer.cid)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("how", ["one-frame", "fragments", "fragments-binary"])
@aio
async def test_message_over_max_size_closes_with_1009(limits, form, how):
    async with Clients(limits) as cl:
        peer = await cl.open(form, login=uid("big"))
        text = padded_ping(form, peer.cid, 4097)
        if how == "one-frame":
            await peer.send_raw(text)
        elif how == "fragments":
            await peer.send_raw([text[:2000], text[2000:4000], text[4000:]])
        else:
            data = text.encode()
            await peer.send_raw([data[:3000], data[3000:]])
        code, before = await close_code(peer.ws)
        assert code == 1009 and before == []


@aio
async def test_default_max_message_size_is_one_mebibyte(server):
    async with Clients(server) as cl:
        peer = await cl.open("verbose", login=uid("big"))
        await peer.send_raw(padded_ping("verbose", peer.cid, 1 << 20))
        expect_response(await peer.recv(), id=ID, to=peer.cid)
        text = padded_ping("verbose", peer.cid, (1 << 20) + 1)
        await peer.send_raw([text[: 1 << 19], text[1 << 19 :]])
        code, _ = await close_code(peer.ws)
        assert code == 1009


@pytest.mark.parametrize("size", [125, 126, 65535, 65536, 200_000, (1 << 20) - 200])
@pytest.mark.parametrize("form", FORMS)
@aio
async def test_relay_of_every_frame_length_class_arrives_intact(server, form, size):
    """Outgoing frames of 7-bit, 16-bit and 64-bit lengths, up to the 1 MiB limit, relayed and broadcast."""
    async with Clients(server) as cl:
        a, b = await cl.bound(form, OTHER[form])
        envelope_size = len(encode(form, a.cid, b.cid, "event", ID, method="chat@v1/send", params={"t": ""}))
        params = {"t": "x" * max(0, size - envelope_size)}
        await a.send_raw(encode(form, a.cid, b.cid, "event", ID, method="chat@v1/send", params=params))
        expected = encode(b.form, a.cid, b.cid, "event", ID, method="chat@v1/send", params=params)
        assert await b.recv_raw() == expected
        await a.send_raw(encode(form, a.cid, "client", "event", ID, method="chat@v1/send", params=params))
        assert await b.recv_raw() == encode(b.form, a.cid, "client", "event", ID, method="chat@v1/send", params=params)
        await b.ping()
        await a.ping()


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", ["text", "binary"])
@aio
async def test_fragmented_message_is_reassembled(server, form, kind):
    async with Clients(server) as cl:
        a, b = await cl.bound(form, OTHER[form])
        params = '{ "text" : "' + "ü" * 300 + '", "n" : [1, 2] }'
        id = new_id()
        text = encode(form, a.cid, b.cid, "request", id, method="chat@v1/send", params=Raw(params))
        data = text.encode() if kind == "binary" else text
        # Uneven pieces, one splitting a multi-byte character when binary.
        pieces = [data[:7], data[7:8], data[8:301], data[301:]]
        await a.send_raw(pieces)
        assert await b.recv_raw() == encode(
            b.form, a.cid, b.cid, "request", id, method="chat@v1/send", params=Raw(params)
        )
        # Fragments of a bad message count as one bad message, answered once.
        await a.send_raw(["{", "nope"])
        expect_error_event(await a.recv(), "INVALID_MESSAGE", to=a.cid)
        await settled(a)
        await a.ping()


@pytest.mark.parametrize("form", FORMS)
@aio
async def test_binary_frames_are_accepted(server, form):
    async with Clients(server) as cl:
        a, b = await cl.bound(form, form)
        id = new_id()
        await a.send_raw(encode(form, a.cid, "server", "request", id, method=PING).encode())
        expect_response(await a.recv(), id=id, to=a.cid)
        id = new_id()
        await a.send_raw(encode(form, a.cid, b.cid, "event", id, method="chat@v1/x", params=Raw('["é"]')).encode())
        got = await b.recv()
        assert got["id"] == id and got["payload"]["params"] == ["é"]


@aio
async def test_many_messages_in_one_burst_are_each_answered_in_order(server):
    async with Clients(server) as cl:
        (a,) = await cl.bound("compact")
        ids = [new_id() for _ in range(200)]
        for id in ids:
            await a.send_raw(encode("compact", a.cid, "server", "request", id, method=PING))
        got = [(await a.recv())["id"] for _ in ids]
        assert got == ids


@pytest.fixture(scope="module")
def echo_server():
    with running_server("--app", "tests.apps.echo_app:app") as srv:
        yield srv


def log_lines_above_info(text: str) -> list[str]:
    return [
        line for line in text.splitlines() if any(f" {level} " in line for level in ("WARNING", "ERROR", "CRITICAL"))
    ]


@pytest.mark.parametrize("method", ["auth@v1/login", "echo@v1/echo"])
@aio
async def test_params_with_an_integer_too_long_for_python_fail_invalid_message_quietly(echo_server, method):
    """JSON allows a 5,000-digit integer; Python will not read one: a clear fail, no traceback, nothing above INFO."""
    huge = Raw("9" * 5000)
    async with Clients(echo_server) as cl:
        peer = await cl.open("verbose")
        if method != "auth@v1/login":
            await peer.login(uid("big"))
        logged_before = len(echo_server.log)
        params = {"token": huge} if method == "auth@v1/login" else [huge]
        reply = await peer.call("server", method, params)
        expect_fail(reply, "INVALID_MESSAGE", id=reply["id"], to=peer.cid)
        await peer.ping()
        assert log_lines_above_info(echo_server.log[logged_before:]) == []
