"""End to end: what a sync handler's params and Context are, whatever the gateway does to save work.

A handler returning its params untouched is answered without encoding them again when their text is
what encoding them would write; these tests hold every answer, byte for byte, to what encoding the
returned value writes (codec_py, the reference), for params sent in every spelling (whitespace,
repeated keys, escapes, -0, floats, long integers, deep nesting, arrays), returned untouched or changed
in any way (a key set, deleted, moved, a nested object changed or replaced, a list grown). The handler
always sees real dicts and lists. A Context the handler keeps still describes its own call after others
ran. The app: tests/apps/params_app.py; a raw client, so the answer's bytes are seen as sent.
"""

from __future__ import annotations

import json

import pytest
from raw_ws import RawWS, frame
from wsa_ws import http_get, new_id, running_server, uid

from wsa_fast.codec_py import _json


@pytest.fixture(scope="module")
def server():
    # params@v1/crash logs its traceback on purpose.
    with running_server("--app", "tests.apps.params_app:app", allow_tracebacks=True) as srv:
        yield srv


@pytest.fixture
def client(server):
    with RawWS(server.host, server.port) as ws:
        cid = uid("sync")
        ws.send(frame(request(cid, new_id(), "auth@v1/login")))
        assert json.loads(ws.recv_text())["payload"] == {"result": "success", "receipt": cid}
        yield ws, cid


def request(cid: str, id: str, method: str, params_text: str | None = None) -> bytes:
    """A request with ``params_text`` put into it exactly as written."""
    params = "" if params_text is None else f',"params":{params_text}'
    text = f'{{"from":"{cid}","to":"server","type":"request","id":"{id}","payload":{{"method":"{method}"{params}}}}}'
    return text.encode()


def call(client, method: str, params_text: str | None = None, id: str | None = None) -> str:
    """The raw text of the answer to one request."""
    ws, cid = client
    id = id or new_id()
    ws.send(frame(request(cid, id, method, params_text)))
    reply = ws.recv_text()
    assert json.loads(reply)["id"] == id
    return reply


def data_text(reply: str) -> str:
    """The answer's data exactly as sent: the last field of a verbose success response."""
    head = '"payload":{"result":"success","data":'
    assert head in reply and reply.endswith("}}"), reply
    return reply[reply.index(head) + len(head) : -2]


# Spellings whose value, written back, is the same text, and spellings where it is not.
PARAMS = [
    '{"n":1}',
    "{}",
    '{"s":"ünïcödé ✓ 😀","k":"v","t":true,"f":false,"z":null,"neg":-42,"i":123456789012345678}',
    '{"a":{"b":{"c":{"d":"deep"}}},"e":{}}',
    '{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":1}}}}}}}}}}',
    '{"a":{},"b":{},"c":{},"d":{},"e":{},"f":{},"g":{},"h":{},"i":{},"j":{"k":1}}',
    '{ "n" : 1 }',
    '\t{"n":1}\n',
    '{"n":1,"n":2}',
    '{"n":1,"m":2,"n":3}',
    '{"n":-0}',
    '{"f":1.5,"g":0.1,"h":1e2,"i":1.0E-7,"j":-0.0,"k":2.50}',
    '{"big":123456789012345678901234567890,"neg":-1234567890123456789}',
    '{"esc":"a\\"b\\\\c\\n\\u00e9\\/","é":"\\ud83d\\ude00"}',
    '{"list":[1,"two",{"three":3}],"empty":[]}',
    "[1,2,3]",
    "[]",
    '[{"n":1}]',
]


@pytest.mark.parametrize("params_text", PARAMS)
def test_params_returned_untouched_come_back_as_encoding_them_writes(client, params_text):
    expected = _json(json.loads(params_text))
    assert data_text(call(client, "params@v1/echo", params_text)) == expected
    # Again on the same connection: nothing from the first call carries over.
    assert data_text(call(client, "params@v1/echo", params_text)) == expected


def changed(params: dict, how: str) -> dict:
    """What params@v1/change does, done here to the value the test expects."""
    if how == "set":
        params["n"] = 2
    elif how == "same value":
        params["how"] = "same value"
    elif how == "delete":
        del params["n"]
    elif how == "nested":
        params["inner"]["k"] = "changed"
    elif how == "nested deep":
        params["inner"]["deeper"]["k"] = [1, 2]
    elif how == "list":
        params["list"].append(3)
    elif how == "replace nested":
        params["inner"] = {"k": "new"}
    elif how == "pop and put back":
        params["n"] = params.pop("n")
    return params


@pytest.mark.parametrize(
    "how",
    ["set", "same value", "delete", "add and remove", "nested", "nested deep", "replace nested", "pop and put back",
     "none"],
)  # fmt: skip
def test_params_changed_by_the_handler_come_back_changed(client, how):
    text = f'{{"how":"{how}","n":1,"inner":{{"k":"v","deeper":{{"k":0}}}},"last":true}}'
    expected = _json(changed(json.loads(text), how))
    assert data_text(call(client, "params@v1/change", text)) == expected


def test_a_list_grown_by_the_handler_comes_back_grown(client):
    text = '{"how":"list","list":[1,2]}'
    assert json.loads(data_text(call(client, "params@v1/change", text))) == {"how": "list", "list": [1, 2, 3]}


@pytest.mark.parametrize(
    ("params_text", "seen"),
    [
        ('{"n":1,"d":{"e":[1,2.5]}}', {"type": "dict", "items": {"n": 1, "d": {"e": [1, 2.5]}}, "keys": ["n", "d"]}),
        ("[1,{}]", {"type": "list", "items": [1, {}], "keys": None}),
    ],
)
def test_the_handler_sees_real_dicts_and_lists(client, params_text, seen):
    assert json.loads(data_text(call(client, "params@v1/look", params_text))) == seen


def test_a_context_the_handler_keeps_still_describes_its_own_call(client):
    _, cid = client
    ids = [new_id() for _ in range(3)]
    kept = []
    for id in ids:
        kept.append([id, "params@v1/keep", cid])
        assert json.loads(data_text(call(client, "params@v1/keep", "{}", id=id)))[-len(kept) :] == kept
        # Calls in between whose Context nobody keeps.
        for _ in range(3):
            call(client, "params@v1/echo", '{"n":1}')
            call(client, "params@v1/id", "{}")


@pytest.mark.parametrize("id", ["ab12c", "2025-05-14T11:27:31.536370717+08:00", "2025-05-14T11:27:31Z"])
def test_ctx_id_is_the_message_id(client, id):
    seen = json.loads(data_text(call(client, "params@v1/id", None, id=id)))
    _, cid = client
    assert seen == {
        "id": id,
        "again": True,
        "repr": f"Context(client_id={cid!r}, id={id!r}, method='params@v1/id')",
        "method": "params@v1/id",
    }


def test_a_crashing_handler_fails_internal_error_and_its_traceback_is_logged(server, client):
    since = len(server.log)
    reply = json.loads(call(client, "params@v1/crash", '{"n":7}'))
    assert reply["payload"] == {"result": "fail", "code": "INTERNAL_ERROR"}
    assert server.wait_for_log("ValueError: crashed on 7")
    log = server.log[since:]
    assert "the handler for params@v1/crash failed" in log and "Traceback (most recent call last)" in log
    assert 'params_app.py", line' in log and "in crash" in log  # the handler's own frame
    # The connection goes on.
    assert data_text(call(client, "params@v1/echo", '{"n":1}')) == '{"n":1}'


def test_the_latency_histogram_counts_how_long_the_handler_ran(server, client):
    """Handler durations are timed by the TSC where the kernel keeps time by it: seconds still."""

    def series() -> dict[str, float]:
        status, body = http_get(server, "/metrics")
        assert status == 200
        lines = [line.rpartition(" ") for line in body.decode().splitlines() if 'method="params@v1/sleep"' in line]
        return {name: float(value) for name, _, value in lines}

    before = series()
    for _ in range(2):
        assert json.loads(call(client, "params@v1/sleep", '{"seconds":0.03}'))["payload"] == {"result": "success"}
    after = series()
    name = "wsa_handler_duration_seconds"
    key = 'method="params@v1/sleep"'
    assert after[f"{name}_count{{{key}}}"] - before.get(f"{name}_count{{{key}}}", 0) == 2
    # Neither call took less than it slept, and the sum is in seconds (not ticks, not milliseconds).
    assert after[f'{name}_bucket{{{key},le="0.025"}}'] == before.get(f'{name}_bucket{{{key},le="0.025"}}', 0)
    assert 0.06 <= after[f"{name}_sum{{{key}}}"] - before.get(f"{name}_sum{{{key}}}", 0) < 60


# Consecutive params of one method, the same keys or not: a dict nobody kept may be filled again.
SEQUENCES = [
    ['{"n":1,"s":"a"}', '{"n":2,"s":"b"}', '{"n":{"deep":[1]},"s":null}', '{"n":3,"s":"c"}'],
    ['{"n":1,"s":"a"}', '{"s":"b","n":2}', '{"n":2}', '{"n":2,"s":"c","t":1}', '{"n":1,"s":"a"}'],
    ['{"n":1}', '{"\\u006e":2}', '{"n":3}', '{"n":4,"n":5}', '{"n":6}', "[1]", '{"n":7}', "{}", '{"n":8}'],
    ['{"é":1,"ü":"x"}', '{"é":2,"ü":"y"}', '{ "é" : 3 , "ü" : "z" }', '{"é":4,"ü":"w"}'],
]


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_params_in_a_row_each_come_as_sent(client, sequence):
    for text in sequence:
        assert data_text(call(client, "params@v1/echo", text)) == _json(json.loads(text))
        seen = json.loads(data_text(call(client, "params@v1/look", text)))
        assert seen["items"] == json.loads(text) and seen["type"] == type(json.loads(text)).__name__


def test_params_a_handler_keeps_are_never_filled_again(client):
    sent = []
    for n in range(4):
        text = f'{{"n":{n},"s":"v{n}"}}'
        sent.append(json.loads(text))
        assert json.loads(data_text(call(client, "params@v1/keep_params", text)))[-len(sent) :] == sent
        call(client, "params@v1/echo", '{"n":99,"s":"x"}')


def test_params_a_handler_changed_do_not_show_in_the_next_call(client):
    for n in range(4):
        text = f'{{"n":{n},"s":"x{n}","d":{{"k":{n}}}}}'
        assert json.loads(data_text(call(client, "params@v1/spoil", text))) == json.loads(text)


def test_params_read_into_a_dict_whose_keys_the_handler_chose_come_as_sent(client):
    # The handler leaves a key holding a backslash and an n (no newline); the next params' key, spelled
    # with the same bytes, is an escape: a newline.
    call(client, "params@v1/rekey", '{"then":{"a\\\\n":0}}')
    assert json.loads(data_text(call(client, "params@v1/rekey", '{"a\\n":1}'))) == ["a\n"]
    # Keys of the same bytes as the text's, one of them not ASCII.
    call(client, "params@v1/rekey", '{"then":{"é":0,"n":0}}')
    assert json.loads(data_text(call(client, "params@v1/rekey", '{"é":1,"n":2}'))) == ["é", "n"]


def test_params_after_a_handler_left_a_key_with_no_utf8_form_are_read(client):
    call(client, "params@v1/rekey", '{"odd":true}')  # leaves a lone surrogate as the params' key
    assert json.loads(data_text(call(client, "params@v1/rekey", '{"x":1}'))) == ["x"]
