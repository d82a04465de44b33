"""Profile sections 2-3, case by case, against both codecs.

Every case is one wire message and its verdict: the decoded ``Message``, or a DecodeError
whose readable ``id`` and ``type`` decide how the gateway answers (a fail response with
that id, or a ``wsa@v1/error`` event when there is none).
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

import pytest
from codec_oracle import assert_agree

from wsa_fast import _codec as compiled
from wsa_fast import codec_py as pure
from wsa_fast.message import COMPACT, VERBOSE, DecodeError, Message


@pytest.fixture(params=["compiled", "pure"])
def codec(request):
    return compiled if request.param == "compiled" else pure


class Invalid(NamedTuple):
    """A refused message: the id and type the error can be answered with (None: unreadable)."""

    id: str | None
    type: str | None


UNREADABLE = Invalid(None, None)
DROP = object()


def envelope(
    form: int = VERBOSE,
    payload: Any = None,
    key_order: tuple[str, ...] | None = None,
    extra: list[tuple[str, str]] = (),
    **fields: Any,
) -> bytes:
    """A request from alice to the server (id abcde, ping), with fields replaced or dropped.

    Field values are Python values (written with json.dumps) or ``Raw`` JSON text.
    """
    names = ("from", "to", "type", "id", "payload") if form == VERBOSE else ("f", "t", "y", "i", "p")
    defaults = dict(
        zip(
            names, ["alice", "server" if form == VERBOSE else "s", "request" if form == VERBOSE else "q", "abcde", None]
        )
    )
    defaults[names[4]] = (
        payload
        if payload is not None
        else (Raw('{"method":"wsa@v1/ping"}') if form == VERBOSE else Raw('{"m":"wsa@v1/ping"}'))
    )
    defaults.update(fields)
    order = key_order or tuple(defaults)
    pairs = [(k, defaults[k]) for k in order if defaults.get(k, DROP) is not DROP]
    pairs.extend(extra)
    text = ",".join(
        f"{json.dumps(k)}:{v.text if isinstance(v, Raw) else json.dumps(v, ensure_ascii=False)}" for k, v in pairs
    )
    return ("{" + text + "}").encode()


class Raw(NamedTuple):
    text: str


def msg(
    type_: str = "request", from_: str = "alice", to: str = "server", id_: str = "abcde", form: int = VERBOSE, **kw: Any
) -> Message:
    if type_ != "response" and "method" not in kw:
        kw["method"] = "wsa@v1/ping"
    return Message(type_, from_, to, id_, form=form, **kw)


ISO = "2025-05-14T11:27:31.536370717+08:00"
LONG_ID = "a" * 64
LONG_METHOD = "svc@v1/" + "e" * 121  # 128 characters
LONG_CODE = "E" * 64
PRINTABLE_64 = "".join(chr(32 + i % 95) for i in range(64))


def nested_list(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


VALID: list[tuple[str, bytes, Message]] = [
    # Section 2: the protocol doc's own examples, both forms.
    (
        "doc-verbose-request",
        b'{"from":"alice","to":"bob","type":"request","id":"a1b2c","payload":{"method":"chat@v1/send","params":{"text":"hi"}}}',
        msg(from_="alice", to="bob", id_="a1b2c", method="chat@v1/send", params={"text": "hi"}),
    ),
    (
        "doc-compact-request",
        b'{"f":"alice","t":"bob","y":"q","i":"a1b2c","p":{"m":"chat@v1/send","p":{"text":"hi"}}}',
        msg(from_="alice", to="bob", id_="a1b2c", method="chat@v1/send", params={"text": "hi"}, form=COMPACT),
    ),
    (
        "doc-compact-fail-response",
        b'{"f":"s","t":"alice","y":"r","i":"a1b2c","p":{"r":"f","c":"NOT_FOUND"}}',
        msg("response", "server", "alice", "a1b2c", COMPACT, result="fail", code="NOT_FOUND"),
    ),
    ("compact-P-alias", b'{"f":"alice","t":"s","y":"q","i":"abcde","P":{"m":"wsa@v1/ping"}}', msg(form=COMPACT)),
    (
        "compact-event-broadcast",
        b'{"f":"alice","t":"c","y":"e","i":"abcde","p":{"m":"chat@v1/say","p":[1,2]}}',
        msg("event", to="client", form=COMPACT, method="chat@v1/say", params=[1, 2]),
    ),
    (
        "verbose-event-broadcast-no-params",
        b'{"from":"alice","to":"client","type":"event","id":"abcde","payload":{"method":"chat@v1/say"}}',
        msg("event", to="client", method="chat@v1/say"),
    ),
    (
        "verbose-from-server",
        b'{"from":"server","to":"bob","type":"event","id":"abcde","payload":{"method":"a@v1/b"}}',
        msg("event", "server", "bob", method="a@v1/b"),
    ),
    ("anonymous-from-empty", envelope(**{"from": ""}), msg(from_="")),
    ("compact-anonymous-from-empty", envelope(COMPACT, f=""), msg(from_="", form=COMPACT)),
    ("params-empty-object", envelope(payload=Raw('{"method":"a@v1/b","params":{}}')), msg(method="a@v1/b", params={})),
    ("params-empty-array", envelope(payload=Raw('{"method":"a@v1/b","params":[]}')), msg(method="a@v1/b", params=[])),
    (
        "params-nested-unicode-escapes",
        envelope(payload=Raw('{"method":"a@v1/b","params":{"s":"\\u00e9\\ud83d\\ude00\\n\\"\\/","t":"\u20ac"}}')),
        msg(method="a@v1/b", params={"s": '\u00e9\U0001f600\n"/', "t": "\u20ac"}),
    ),
    (
        "params-numbers-and-literals",
        envelope(payload=Raw('{"method":"a@v1/b","params":[0,-0,1.5,-2e-3,1E+2,true,false,null]}')),
        msg(method="a@v1/b", params=[0, 0, 1.5, -0.002, 100.0, True, False, None]),
    ),
    (
        "params-big-integers-exact",
        envelope(
            payload=Raw(
                '{"method":"a@v1/b","params":[18446744073709551616,-9223372036854775809,'
                "123456789012345678901234567890]}"
            )
        ),
        msg(method="a@v1/b", params=[2**64, -(2**63) - 1, 123456789012345678901234567890]),
    ),
    (
        "params-duplicate-inner-keys-last-wins",
        envelope(payload=Raw('{"method":"a@v1/b","params":{"a":1,"a":2}}')),
        msg(method="a@v1/b", params={"a": 2}),
    ),
    (
        "params-huge-float-is-inf",
        envelope(payload=Raw('{"method":"a@v1/b","params":[1e400]}')),
        msg(method="a@v1/b", params=[float("inf")]),
    ),
    (
        "success-no-receipt",
        envelope(type="response", payload=Raw('{"result":"success"}')),
        msg("response", result="success"),
    ),
    (
        "success-receipt-string",
        envelope(type="response", payload=Raw('{"result":"success","receipt":"alice"}')),
        msg("response", result="success", receipt="alice"),
    ),
    (
        "success-receipt-null",
        envelope(type="response", payload=Raw('{"result":"success","receipt":null}')),
        msg("response", result="success", has_receipt=True),
    ),
    (
        "success-receipt-any-string",
        envelope(type="response", payload=Raw('{"result":"success","receipt":" \u00e9 "}')),
        msg("response", result="success", receipt=" \u00e9 "),
    ),
    (
        "compact-success-receipt-in-c",
        envelope(COMPACT, y="r", p=Raw('{"r":"s","c":"bob"}')),
        msg("response", form=COMPACT, result="success", receipt="bob"),
    ),
    (
        "compact-success-receipt-null-in-c",
        envelope(COMPACT, y="r", p=Raw('{"r":"s","c":null}')),
        msg("response", form=COMPACT, result="success", has_receipt=True),
    ),
    (
        "success-data-object",
        envelope(type="response", payload=Raw('{"result":"success","data":{"n":1}}')),
        msg("response", result="success", data={"n": 1}),
    ),
    (
        "success-data-null",
        envelope(type="response", payload=Raw('{"result":"success","data":null}')),
        msg("response", result="success", has_data=True),
    ),
    (
        "success-data-scalar",
        envelope(type="response", payload=Raw('{"result":"success","data":"x"}')),
        msg("response", result="success", data="x"),
    ),
    (
        "fail-code-and-data",
        envelope(type="response", payload=Raw('{"result":"fail","code":"TIMEOUT","data":[1]}')),
        msg("response", result="fail", code="TIMEOUT", data=[1]),
    ),
    (
        "compact-fail-data",
        envelope(COMPACT, y="r", p=Raw('{"d":false,"c":"GONE","r":"f"}')),
        msg("response", form=COMPACT, result="fail", code="GONE", data=False),
    ),
    (
        "to-broadcast-response-decodes",
        envelope(type="response", to="client", payload=Raw('{"result":"success"}')),
        msg("response", to="client", result="success"),
    ),
    # Ids.
    ("id-iso-doc-example", envelope(id=ISO), msg(id_=ISO)),
    ("id-iso-Z-no-fraction", envelope(id="2025-05-14T11:27:31Z"), msg(id_="2025-05-14T11:27:31Z")),
    ("id-iso-1-digit-fraction", envelope(id="2025-05-14T11:27:31.5Z"), msg(id_="2025-05-14T11:27:31.5Z")),
    ("id-iso-minus-offset", envelope(id="2025-05-14T11:27:31.123-05:30"), msg(id_="2025-05-14T11:27:31.123-05:30")),
    ("id-iso-leap-second", envelope(id="2016-12-31T23:59:60Z"), msg(id_="2016-12-31T23:59:60Z")),
    ("id-iso-extremes", envelope(id="0000-01-01T00:00:00+23:59"), msg(id_="0000-01-01T00:00:00+23:59")),
    ("id-short-digits", envelope(id="00000"), msg(id_="00000")),
    # Client ids, methods and codes at their limits.
    ("client-id-64-chars", envelope(**{"from": LONG_ID}), msg(from_=LONG_ID)),
    ("client-id-full-charset", envelope(to="A.z_0:9@x-Y"), msg(to="A.z_0:9@x-Y")),
    ("client-id-S-is-not-reserved-in-caps", envelope(to="S"), msg(to="S")),
    ("compact-client-id-sv", envelope(COMPACT, t="sv"), msg(to="sv", form=COMPACT)),
    ("method-128-chars", envelope(payload=Raw(json.dumps({"method": LONG_METHOD}))), msg(method=LONG_METHOD)),
    ("method-shapes", envelope(payload=Raw('{"method":"a-b_c@v10/_x.y/z-"}')), msg(method="a-b_c@v10/_x.y/z-")),
    (
        "code-64-chars",
        envelope(type="response", payload=Raw(json.dumps({"result": "fail", "code": LONG_CODE}))),
        msg("response", result="fail", code=LONG_CODE),
    ),
    # Spelling: key order, whitespace, escaped keys.
    (
        "keys-any-order",
        b'{"payload":{"params":[1],"method":"a@v1/b"},"id":"abcde","type":"request","to":"server","from":"alice"}',
        msg(method="a@v1/b", params=[1]),
    ),
    (
        "whitespace-everywhere",
        b' \r\n{ "from" : "alice" ,\t"to":"server", "type":"request","id":"abcde",'
        b'"payload":{ "method" :"wsa@v1/ping" } }\n ',
        msg(),
    ),
    (
        "escaped-key-spelling",
        b'{"\\u0066rom":"alice","to":"server","type":"request","id":"abcde","payload":{"method":"wsa@v1/ping"}}',
        msg(),
    ),
    ("escaped-value-spelling", envelope(id=Raw('"\\u0061bcde"')), msg()),
    (
        "params-nested-to-128",
        envelope(payload=Raw('{"method":"a@v1/b","params":' + "[" * 126 + "]" * 126 + "}")),
        msg(method="a@v1/b", params=nested_list(126)),
    ),
]

INVALID: list[tuple[str, bytes, Invalid]] = [
    # Section 2: forms and the seed's stray type.
    ("seed-type-g", envelope(COMPACT, y="g"), Invalid("abcde", None)),
    (
        "keys-of-both-forms",
        envelope(key_order=("from", "to", "type", "id", "payload"), extra=[("i", "abcde")]),
        Invalid("abcde", "request"),
    ),
    (
        "mixed-form-envelope",
        b'{"from":"alice","t":"s","type":"request","id":"abcde","payload":{"method":"a@v1/b"}}',
        Invalid("abcde", "request"),
    ),
    ("payload-keys-of-other-form", envelope(payload=Raw('{"m":"wsa@v1/ping"}')), Invalid("abcde", "request")),
    ("compact-payload-verbose-keys", envelope(COMPACT, p=Raw('{"method":"wsa@v1/ping"}')), Invalid("abcde", "request")),
    ("verbose-type-compact-value", envelope(type="q"), Invalid("abcde", "request")),
    ("compact-type-verbose-value", envelope(COMPACT, y="request"), Invalid("abcde", "request")),
    ("verbose-to-s-is-reserved", envelope(to="s"), Invalid("abcde", "request")),
    ("compact-to-server-word", envelope(COMPACT, t="server"), Invalid("abcde", "request")),
    ("compact-to-client-word", envelope(COMPACT, t="client"), Invalid("abcde", "request")),
    (
        "verbose-result-compact-value",
        envelope(type="response", payload=Raw('{"result":"s"}')),
        Invalid("abcde", "response"),
    ),
    (
        "P-alias-in-verbose",
        envelope(key_order=("from", "to", "type", "id"), extra=[("P", Raw('{"method":"a@v1/b"}'))]),
        Invalid("abcde", "request"),
    ),
    ("p-and-P-both", envelope(COMPACT, extra=[("P", Raw('{"m":"a@v1/b"}'))]), Invalid("abcde", "request")),
    # Section 3: keys.
    ("unknown-envelope-key", envelope(extra=[("extra", 1)]), Invalid("abcde", "request")),
    ("unknown-payload-key", envelope(payload=Raw('{"method":"a@v1/b","x":1}')), Invalid("abcde", "request")),
    ("duplicate-envelope-key", envelope(extra=[("to", "bob")]), Invalid("abcde", "request")),
    (
        "duplicate-payload-key",
        envelope(payload=Raw('{"method":"a@v1/b","method":"a@v1/b"}')),
        Invalid("abcde", "request"),
    ),
    ("missing-from", envelope(**{"from": DROP}), Invalid("abcde", "request")),
    ("missing-to", envelope(to=DROP), Invalid("abcde", "request")),
    ("missing-type", envelope(type=DROP), Invalid("abcde", None)),
    ("missing-id", envelope(id=DROP), Invalid(None, "request")),
    ("missing-payload", envelope(payload=DROP), Invalid("abcde", "request")),
    ("missing-method", envelope(payload=Raw('{"params":{}}')), Invalid("abcde", "request")),
    ("missing-result", envelope(type="response", payload=Raw("{}")), Invalid("abcde", "response")),
    ("fail-missing-code", envelope(type="response", payload=Raw('{"result":"fail"}')), Invalid("abcde", "response")),
    ("compact-fail-missing-code", envelope(COMPACT, y="r", p=Raw('{"r":"f"}')), Invalid("abcde", "response")),
    # Section 3: wrong types and shapes.
    ("from-not-string", envelope(**{"from": 1}), Invalid("abcde", "request")),
    ("from-null", envelope(**{"from": None}), Invalid("abcde", "request")),
    ("to-empty", envelope(to=""), Invalid("abcde", "request")),
    ("to-array", envelope(to=["bob"]), Invalid("abcde", "request")),
    ("type-not-string", envelope(type=1), Invalid("abcde", None)),
    ("id-number", envelope(id=12345), Invalid(None, "request")),
    ("payload-array", envelope(payload=Raw('[{"method":"a@v1/b"}]')), Invalid("abcde", "request")),
    ("payload-null", envelope(payload=Raw("null")), Invalid("abcde", "request")),
    ("params-null", envelope(payload=Raw('{"method":"a@v1/b","params":null}')), Invalid("abcde", "request")),
    ("params-string", envelope(payload=Raw('{"method":"a@v1/b","params":"x"}')), Invalid("abcde", "request")),
    ("params-number", envelope(payload=Raw('{"method":"a@v1/b","params":1}')), Invalid("abcde", "request")),
    ("method-not-string", envelope(payload=Raw('{"method":["a@v1/b"]}')), Invalid("abcde", "request")),
    (
        "request-with-result",
        envelope(payload=Raw('{"method":"a@v1/b","result":"success"}')),
        Invalid("abcde", "request"),
    ),
    ("request-with-data", envelope(payload=Raw('{"method":"a@v1/b","data":1}')), Invalid("abcde", "request")),
    (
        "response-with-method",
        envelope(type="response", payload=Raw('{"result":"success","method":"a@v1/b"}')),
        Invalid("abcde", "response"),
    ),
    (
        "response-with-params",
        envelope(type="response", payload=Raw('{"result":"success","params":{}}')),
        Invalid("abcde", "response"),
    ),
    (
        "success-with-code",
        envelope(type="response", payload=Raw('{"result":"success","code":"X"}')),
        Invalid("abcde", "response"),
    ),
    (
        "fail-with-receipt",
        envelope(type="response", payload=Raw('{"result":"fail","code":"X","receipt":"r"}')),
        Invalid("abcde", "response"),
    ),
    (
        "receipt-number",
        envelope(type="response", payload=Raw('{"result":"success","receipt":1}')),
        Invalid("abcde", "response"),
    ),
    ("compact-receipt-object", envelope(COMPACT, y="r", p=Raw('{"r":"s","c":{}}')), Invalid("abcde", "response")),
    (
        "code-null",
        envelope(type="response", payload=Raw('{"result":"fail","code":null}')),
        Invalid("abcde", "response"),
    ),
    ("result-unknown", envelope(type="response", payload=Raw('{"result":"ok"}')), Invalid("abcde", "response")),
    ("result-not-string", envelope(type="response", payload=Raw('{"result":true}')), Invalid("abcde", "response")),
    # Section 3: lexical rules.
    ("from-reserved-client", envelope(**{"from": "client"}), Invalid("abcde", "request")),
    ("from-reserved-c", envelope(**{"from": "c"}), Invalid("abcde", "request")),
    ("from-reserved-s-in-verbose", envelope(**{"from": "s"}), Invalid("abcde", "request")),
    ("compact-from-server-word", envelope(COMPACT, f="server"), Invalid("abcde", "request")),
    ("client-id-65-chars", envelope(**{"from": "a" * 65}), Invalid("abcde", "request")),
    ("client-id-space", envelope(to="bo b"), Invalid("abcde", "request")),
    ("client-id-slash", envelope(to="a/b"), Invalid("abcde", "request")),
    ("client-id-non-ascii", envelope(to="b\u00f6b"), Invalid("abcde", "request")),
    ("id-4-chars", envelope(id="abcd"), Invalid("abcd", "request")),
    ("id-6-chars", envelope(id="abcdef"), Invalid("abcdef", "request")),
    ("id-uppercase", envelope(id="ABCDE"), Invalid("ABCDE", "request")),
    ("id-iso-no-offset", envelope(id="2025-05-14T11:27:31"), Invalid("2025-05-14T11:27:31", "request")),
    (
        "id-iso-10-fraction-digits",
        envelope(id="2025-05-14T11:27:31.1234567890Z"),
        Invalid("2025-05-14T11:27:31.1234567890Z", "request"),
    ),
    ("id-iso-empty-fraction", envelope(id="2025-05-14T11:27:31.Z"), Invalid("2025-05-14T11:27:31.Z", "request")),
    ("id-iso-month-13", envelope(id="2025-13-14T11:27:31Z"), Invalid("2025-13-14T11:27:31Z", "request")),
    ("id-iso-month-00", envelope(id="2025-00-14T11:27:31Z"), Invalid("2025-00-14T11:27:31Z", "request")),
    ("id-iso-day-32", envelope(id="2025-05-32T11:27:31Z"), Invalid("2025-05-32T11:27:31Z", "request")),
    ("id-iso-hour-24", envelope(id="2025-05-14T24:00:00Z"), Invalid("2025-05-14T24:00:00Z", "request")),
    ("id-iso-minute-60", envelope(id="2025-05-14T11:60:31Z"), Invalid("2025-05-14T11:60:31Z", "request")),
    ("id-iso-second-61", envelope(id="2025-05-14T11:27:61Z"), Invalid("2025-05-14T11:27:61Z", "request")),
    (
        "id-iso-offset-hour-24",
        envelope(id="2025-05-14T11:27:31+24:00"),
        Invalid("2025-05-14T11:27:31+24:00", "request"),
    ),
    ("id-iso-offset-no-colon", envelope(id="2025-05-14T11:27:31+0800"), Invalid("2025-05-14T11:27:31+0800", "request")),
    ("id-iso-lowercase-z", envelope(id="2025-05-14T11:27:31z"), Invalid("2025-05-14T11:27:31z", "request")),
    ("method-129-chars", envelope(payload=Raw(json.dumps({"method": LONG_METHOD + "e"}))), Invalid("abcde", "request")),
    ("method-no-version", envelope(payload=Raw('{"method":"wsa/ping"}')), Invalid("abcde", "request")),
    ("method-leading-digit", envelope(payload=Raw('{"method":"1wsa@v1/ping"}')), Invalid("abcde", "request")),
    ("method-empty-endpoint", envelope(payload=Raw('{"method":"wsa@v1/"}')), Invalid("abcde", "request")),
    ("method-capital-V", envelope(payload=Raw('{"method":"wsa@V1/ping"}')), Invalid("abcde", "request")),
    (
        "code-lowercase",
        envelope(type="response", payload=Raw('{"result":"fail","code":"not_found"}')),
        Invalid("abcde", "response"),
    ),
    (
        "code-65-chars",
        envelope(type="response", payload=Raw(json.dumps({"result": "fail", "code": LONG_CODE + "E"}))),
        Invalid("abcde", "response"),
    ),
    (
        "code-leading-underscore",
        envelope(type="response", payload=Raw('{"result":"fail","code":"_X"}')),
        Invalid("abcde", "response"),
    ),
    # Section 3, answering a bad message: which id is readable.
    ("readable-id-64-printable", envelope(id=PRINTABLE_64), Invalid(PRINTABLE_64, "request")),
    ("unreadable-id-65-chars", envelope(id="x" * 65), Invalid(None, "request")),
    ("unreadable-id-non-ascii", envelope(id="abcd\u00e9"), Invalid(None, "request")),
    ("unreadable-id-control-char", envelope(id="abc\u007fd"), Invalid(None, "request")),
    ("unreadable-id-empty", envelope(id=""), Invalid(None, "request")),
    ("first-id-key-is-read", envelope(extra=[("id", "zzzzz")]), Invalid("abcde", "request")),
    (
        "first-id-key-not-string",
        envelope(key_order=("id", "from", "to", "type", "payload"), id=5, extra=[("i", "abcde")]),
        Invalid(None, "request"),
    ),
    ("compact-id-readable", envelope(COMPACT, t="x y"), Invalid("abcde", "request")),
    ("type-read-in-either-form", envelope(COMPACT, y="response", t=""), Invalid("abcde", "response")),
    (
        "integer-too-long-in-method-is-a-wrong-type",
        envelope(payload=Raw('{"method":' + "9" * 5000 + "}")),
        Invalid("abcde", "request"),
    ),
    (
        "integer-too-long-for-python-in-params",
        envelope(payload=Raw('{"method":"a@v1/b","params":[' + "9" * 5000 + "]}")),
        Invalid("abcde", "request"),
    ),
    (
        "integer-too-long-under-a-duplicate-key",
        envelope(payload=Raw('{"method":"a@v1/b","params":{"a":' + "9" * 5000 + ',"a":1}}')),
        Invalid("abcde", "request"),
    ),
    # Section 3: strict JSON (never answered by id).
    ("empty", b"", UNREADABLE),
    ("whitespace-only", b" \n", UNREADABLE),
    ("not-json", b"hello", UNREADABLE),
    ("array-root", b'[{"id":"abcde"}]', UNREADABLE),
    ("string-root", b'"abcde"', UNREADABLE),
    ("null-root", b"null", UNREADABLE),
    ("truncated", envelope()[:-1], UNREADABLE),
    ("trailing-content", envelope() + b"x", UNREADABLE),
    ("two-documents", envelope() + envelope(), UNREADABLE),
    ("trailing-comma", envelope()[:-1] + b",}", UNREADABLE),
    ("single-quotes", envelope().replace(b'"alice"', b"'alice'"), UNREADABLE),
    ("byte-order-mark", b"\xef\xbb\xbf" + envelope(), UNREADABLE),
    ("NaN-in-params", envelope(payload=Raw('{"method":"a@v1/b","params":[NaN]}')), UNREADABLE),
    ("Infinity-in-data", envelope(type="response", payload=Raw('{"result":"success","data":Infinity}')), UNREADABLE),
    ("minus-Infinity-in-field", envelope(**{"from": Raw("-Infinity")}), UNREADABLE),
    ("leading-zero-number", envelope(payload=Raw('{"method":"a@v1/b","params":[01]}')), UNREADABLE),
    ("bare-minus", envelope(extra=[("zz", Raw("-"))]), UNREADABLE),
    ("control-char-in-string", envelope(to=Raw('"b\tob"')), UNREADABLE),
    ("bad-escape", envelope(to=Raw('"b\\qob"')), UNREADABLE),
    ("invalid-utf8", envelope(to=Raw('"b\xffob"')).replace("\xff".encode(), b"\xff"), UNREADABLE),
    (
        "invalid-utf8-in-params",
        envelope(payload=Raw('{"method":"a@v1/b","params":["x"]}')).replace(b'"x"', b'"\xc0\x80"'),
        UNREADABLE,
    ),
    ("utf8-encoded-surrogate", envelope().replace(b"alice", b"al\xed\xa0\x80ice"), UNREADABLE),
    ("lone-high-surrogate-escape-in-field", envelope(**{"from": Raw('"\\ud800"')}), UNREADABLE),
    ("lone-low-surrogate-escape-in-key", envelope(extra=[("\udc00", 1)]), UNREADABLE),
    ("lone-surrogate-escape-in-params", envelope(payload=Raw('{"method":"a@v1/b","params":["\\ud800x"]}')), UNREADABLE),
    (
        "reversed-surrogate-pair-in-data",
        envelope(type="response", payload=Raw('{"result":"success","data":"\\udc00\\ud800"}')),
        UNREADABLE,
    ),
    # On-Demand skips an unread scalar leniently; what follows a field value must be , or }.
    ("scalar-then-colon-in-unknown-key", envelope(extra=[("zz", Raw('"d":1'))]), UNREADABLE),
    ("scalar-then-colon-closing-early", b'{"":"d":}\n,"type":"response"}', UNREADABLE),
    (
        "number-then-colon-in-data",
        envelope(type="response", payload=Raw('{"result":"success","data":1:2}')),
        UNREADABLE,
    ),
    ("bool-then-colon-in-field", envelope(**{"from": Raw('true:"x"')}), UNREADABLE),
    ("number-then-string-in-params", envelope(payload=Raw('{"method":"a@v1/b","params":1 "x"}')), UNREADABLE),
    (
        "nested-129-in-params",
        envelope(payload=Raw('{"method":"a@v1/b","params":' + "[" * 127 + "]" * 127 + "}")),
        UNREADABLE,
    ),
    ("nested-129-in-unknown-key", envelope(extra=[("zz", Raw('{"a":' * 128 + "1" + "}" * 128))]), UNREADABLE),
    ("nested-deep-in-from", envelope(**{"from": Raw("[" * 200 + "]" * 200)}), UNREADABLE),
]


@pytest.mark.parametrize("raw, expected", [pytest.param(raw, m, id=name) for name, raw, m in VALID])
def test_valid(codec, raw: bytes, expected: Message) -> None:
    got = codec.decode(raw)
    assert got == expected
    # == treats 1 == 1.0 == True; the values must be of the same types too.
    assert repr(got.params) == repr(expected.params) and repr(got.data) == repr(expected.data)


@pytest.mark.parametrize("raw, expected", [pytest.param(raw, v, id=name) for name, raw, v in INVALID])
def test_invalid(codec, raw: bytes, expected: Invalid) -> None:
    with pytest.raises(DecodeError) as caught:
        codec.decode(raw)
    assert (caught.value.id, caught.value.type) == expected
    assert caught.value.reason
    assert caught.value.code == "INVALID_MESSAGE"


def test_the_error_names_the_raw_from(codec) -> None:
    with pytest.raises(DecodeError) as caught:
        codec.decode(envelope(COMPACT, f="s", id="bad"))
    assert caught.value.from_ == "s"


def test_str_input_is_decoded_as_its_utf8(codec) -> None:
    assert codec.decode(envelope().decode()) == msg()
    with pytest.raises(DecodeError) as caught:
        codec.decode(envelope().decode().replace("alice", "al\ud800ice"))
    assert (caught.value.id, caught.value.type) == UNREADABLE


def test_decode_accepts_any_bytes_like(codec) -> None:
    raw = envelope()
    assert codec.decode(bytearray(raw)) == codec.decode(memoryview(raw)) == msg()


# Encoding: the canonical layout of section 2 ("keys in the order above, with no spaces").

ENCODED = [
    (
        "request-verbose",
        msg(from_="alice", to="bob", id_="a1b2c", method="chat@v1/send", params={"text": "hi"}),
        VERBOSE,
        b'{"from":"alice","to":"bob","type":"request","id":"a1b2c","payload":{"method":"chat@v1/send","params":{"text":"hi"}}}',
    ),
    (
        "request-compact",
        msg(from_="alice", to="bob", id_="a1b2c", method="chat@v1/send", params={"text": "hi"}),
        COMPACT,
        b'{"f":"alice","t":"bob","y":"q","i":"a1b2c","p":{"m":"chat@v1/send","p":{"text":"hi"}}}',
    ),
    (
        "fail-compact",
        msg("response", "server", "alice", "a1b2c", result="fail", code="NOT_FOUND"),
        COMPACT,
        b'{"f":"s","t":"alice","y":"r","i":"a1b2c","p":{"r":"f","c":"NOT_FOUND"}}',
    ),
    (
        "event-broadcast-compact",
        msg("event", to="client", method="a@v1/b"),
        COMPACT,
        b'{"f":"alice","t":"c","y":"e","i":"abcde","p":{"m":"a@v1/b"}}',
    ),
    (
        "success-receipt-null-data-null",
        msg("response", result="success", has_receipt=True, has_data=True),
        VERBOSE,
        b'{"from":"alice","to":"server","type":"response","id":"abcde","payload":{"result":"success","receipt":null,'
        b'"data":null}}',
    ),
    (
        "success-receipt-compact",
        msg("response", result="success", receipt="bob", data=[1]),
        COMPACT,
        b'{"f":"alice","t":"s","y":"r","i":"abcde","p":{"r":"s","c":"bob","d":[1]}}',
    ),
    (
        "fail-code-data-verbose",
        msg("response", "server", "bob", result="fail", code="X", data={"k": "v"}),
        VERBOSE,
        b'{"from":"server","to":"bob","type":"response","id":"abcde","payload":{"result":"fail","code":"X",'
        b'"data":{"k":"v"}}}',
    ),
    (
        "anonymous-from",
        msg(from_=""),
        VERBOSE,
        b'{"from":"","to":"server","type":"request","id":"abcde","payload":{"method":"wsa@v1/ping"}}',
    ),
    (
        "escapes-and-unicode",
        msg(method="a@v1/b", params=['"\\\n\x01\x7f\u00e9\U0001f600/']),
        VERBOSE,
        '{"from":"alice","to":"server","type":"request","id":"abcde","payload":{"method":"a@v1/b",'
        '"params":["\\"\\\\\\n\\u0001\x7f\u00e9\U0001f600/"]}}'.encode(),
    ),
    (
        "big-integers",
        msg(method="a@v1/b", params=[2**64, -(2**63) - 1]),
        VERBOSE,
        b'{"from":"alice","to":"server","type":"request","id":"abcde","payload":{"method":"a@v1/b",'
        b'"params":[18446744073709551616,-9223372036854775809]}}',
    ),
]


@pytest.mark.parametrize("message, form, expected", [pytest.param(m, f, e, id=n) for n, m, f, e in ENCODED])
def test_encode(codec, message: Message, form: int, expected: bytes) -> None:
    assert codec.encode(message, form) == expected
    decoded = codec.decode(expected)
    assert decoded.form == form
    decoded.form = message.form
    assert decoded == message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")]])
def test_encode_refuses_non_finite_numbers(codec, value) -> None:
    with pytest.raises(ValueError):
        codec.encode(msg("response", result="success", data=value))


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (16_777_217, b"\x81\x7f\x00\x00\x00\x00\x01\x00\x00\x01"),
    ],
)
def test_frame_header_encodes_each_length_class_minimally(size: int, header: bytes) -> None:
    """RFC 6455 5.2: a FIN text frame, unmasked, length in 7, 7+16 or 7+64 bits, the shortest that fits."""
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert compiled.frame_of(payload) == header + payload


# Bytes the string rules care about inside a params string, and some they do not: the compiled codec
# reads plain text eight bytes at a time, so each is tried at every offset of such a block.
STRING_BYTES = [
    b'"',
    b"\\",
    b'\\"',
    b"\\n",
    b"\\u00e9",
    b"\\ud83d\\ude00",
    b"\\x",
    b"\\u12",
    b"\x00",
    b"\x1f",
    b"\x20",
    b"\x7f",
    "é".encode(),
    b"\xff",
    b"!",
    b"#",
    b"[",
    b"\\\\",
]


@pytest.mark.parametrize("special", STRING_BYTES)
def test_string_bytes_in_params_at_every_offset(special: bytes) -> None:
    """Each byte that ends, escapes or breaks a string, and bytes next to them, from 0 to 24 bytes into a long
    string: both codecs give the same verdict (valid, or the same refusal)."""
    head = b'{"from":"x","to":"server","type":"request","id":"abcde","payload":{"method":"a@v1/b","params":{"s":"'
    for offset in range(25):
        for tail in (0, 1, 7, 8, 9, 40):
            verdict = assert_agree(head + b"a" * offset + special + b"b" * tail + b'","t":1}}}')
            if special in (b"!", b"\\n", "é".encode()):
                assert verdict[0] == "ok", verdict


@pytest.mark.parametrize("special", [b'"', b"\\", b"\n", b"\x00", b"\x1f", b"\x7f", "é".encode(), b"a"])
def test_encoded_strings_escaped_at_every_offset(special: bytes) -> None:
    """The compiled encoder copies plain text eight bytes at a time: a byte to escape, or a plain one, at every
    offset of such a block, in every string field and envelope shape, is written as the reference writes it."""
    char = special.decode()
    for offset in range(25):
        for tail in (0, 1, 7, 8, 9, 40):
            text = "a" * offset + char + "b" * tail
            for message in (
                msg("response", result="success", receipt=text, has_receipt=True, data={"k": text}, has_data=True),
                msg("response", result="success", receipt=None, has_receipt=True),
                msg("response", result="fail", code="NOT_FOUND", data=[text], has_data=True),
                msg("response", result="success"),
                msg("event", to="client", method="a@v1/b", params={"t": text}),
                msg("request", from_="server", to="x" * (offset + 1), method="a@v1/" + "c" * (tail + 1)),
            ):
                for form in (VERBOSE, COMPACT):
                    assert compiled.encode(message, form) == pure.encode(message, form), (message, form)


# Messages as the codecs write them (keys in order, no whitespace): the compiled codec reads these by its plain
# path, and gives anything else to simdjson's reader. Each is broken below at every byte, so that each of the
# plain path's checks (text, keys, strings, values, the end) is met by input that only it would let through.
CANONICAL = [
    b'{"from":"alice","to":"server","type":"request","id":"abcde","payload":{"method":"a@v1/b","params":{"k":[1,"x"]}}}',
    b'{"f":"alice","t":"bob","y":"e","i":"abcde","p":{"m":"a@v1/b","p":[true,null]}}',
    b'{"from":"server","to":"alice","type":"response","id":"abcde","payload":{"result":"success","receipt":"ok",'
    b'"data":{"a":1}}}',
    b'{"from":"alice","to":"bob","type":"response","id":"abcde","payload":{"result":"fail","code":"NOT_FOUND",'
    b'"data":"x"}}',
    b'{"f":"alice","t":"bob","y":"r","i":"abcde","p":{"r":"s","c":null,"d":5}}',
    b'{"f":"","t":"s","y":"q","i":"2025-05-14T11:27:31.536370717+08:00","p":{"m":"wsa@v1/ping"}}',
    b'{"from":"server","to":"","type":"response","id":"abcde","payload":{"result":"success"}}',
    b'{"from":"a","to":"b","type":"event","id":"abcde","payload":{}}',
]
INSERTED = [b" ", b"\n", b"x", b"\\", b'"', b"\x00", b"\x1f", b"\xff", b"\xc3", b"}", b",", b"1", b"null"]
IN_STRINGS = [b'\\"', b"\\\\", b"\\u0041", b"\\u00e9", b"\\ud800", b"\\n", b"\x01", b"\x7f", "é".encode(), b"\xe9"]


@pytest.mark.parametrize("raw", CANONICAL)
def test_canonical_messages_broken_at_every_byte(raw: bytes) -> None:
    assert assert_agree(raw)[0] == ("error" if raw.endswith(b"{}}") else "ok")  # an event needs a method
    for i in range(len(raw) + 1):
        assert_agree(raw[:i])
        assert_agree(raw[:i] + raw[i + 1 :])
        for extra in INSERTED:
            assert_agree(raw[:i] + extra + raw[i:])


@pytest.mark.parametrize("raw", CANONICAL)
def test_canonical_messages_with_each_string_respelled(raw: bytes) -> None:
    """Every string value and key of the message, its text replaced by one holding an escape, a control byte or
    non-ASCII text at each offset of a 16-byte block, or the value by another type."""
    for match in re.finditer(rb'"[^"\\]*"', raw):
        start, end = match.span()
        for value in (b"null", b"1", b"true", b"[]", b"{}", b'""'):
            assert_agree(raw[:start] + value + raw[end:])
        for special in IN_STRINGS:
            for offset in (0, 1, 7, 15, 16, 17):
                text = b'"' + b"a" * offset + special + b"b" * 3 + b'"'
                assert_agree(raw[:start] + text + raw[end:])
