"""Codec microbenchmarks: the compiled codec against the pure-Python reference.

Not part of the default test run (``testpaths`` is ``tests``). Run from the repo root:

    python -m pytest bench/test_codec_bench.py --benchmark-only

Each group (decode or encode of one message) holds the compiled and the pure codec, so
pytest-benchmark's table shows their ratio directly. These time the Python-level API
(``decode`` builds a ``Message``, params included); the gateway's own hot path stays in C
and never builds one.
"""

from __future__ import annotations

import json

import pytest

from wsa_fast import _codec as compiled
from wsa_fast import codec_py as pure
from wsa_fast.message import COMPACT, VERBOSE

CODECS = {"compiled": compiled, "pure": pure}

# About 200 bytes of params, of the shapes a chat relay carries.
RELAY_PARAMS = {
    "room": "general",
    "text": "The quick brown fox jumps over the lazy dog, twice: caf\u00e9 \U0001f98a!",
    "mentions": ["bob", "carol.w", "dave@team"],
    "reply_to": 1234567,
    "meta": {"edited": False, "priority": 2.5, "tags": None},
}

WIRE = {
    "ping": b'{"from":"","to":"server","type":"request","id":"a1b2c","payload":{"method":"wsa@v1/ping"}}',
    "ping-compact": b'{"f":"","t":"s","y":"q","i":"a1b2c","p":{"m":"wsa@v1/ping"}}',
    "relay-event": json.dumps(
        {
            "from": "alice",
            "to": "bob",
            "type": "event",
            "id": "2025-05-14T11:27:31.536370717+08:00",
            "payload": {"method": "chat@v1/send", "params": RELAY_PARAMS},
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode(),
    "response": b'{"from":"server","to":"alice","type":"response","id":"a1b2c",'
    b'"payload":{"result":"success","receipt":"alice","data":{"ok":true,"n":3}}}',
}
FORMS = {"ping": VERBOSE, "ping-compact": COMPACT, "relay-event": VERBOSE, "response": VERBOSE}


def test_relay_params_are_about_200_bytes() -> None:
    size = len(json.dumps(RELAY_PARAMS, ensure_ascii=False, separators=(",", ":")).encode())
    assert 180 <= size <= 240, size


@pytest.mark.parametrize("codec_name", list(CODECS))
@pytest.mark.parametrize("kind", list(WIRE))
def test_decode(benchmark, kind: str, codec_name: str) -> None:
    benchmark.group = f"decode {kind} ({len(WIRE[kind])} B)"
    decode = CODECS[codec_name].decode
    raw = WIRE[kind]
    msg = benchmark(decode, raw)
    assert msg == pure.decode(raw)


@pytest.mark.parametrize("codec_name", list(CODECS))
@pytest.mark.parametrize("kind", list(WIRE))
def test_encode(benchmark, kind: str, codec_name: str) -> None:
    benchmark.group = f"encode {kind}"
    encode = CODECS[codec_name].encode
    msg, form = pure.decode(WIRE[kind]), FORMS[kind]
    out = benchmark(encode, msg, form)
    assert json.loads(out) == json.loads(pure.encode(msg, form))
