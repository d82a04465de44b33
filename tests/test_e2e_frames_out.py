"""End to end: the frames the gateway writes carry their length in the shortest form (RFC 6455 5.2).

The engine writes a message's JSON after a header whose size it guesses from a bound of the JSON's
length, and moves the JSON when the text came out shorter: relayed messages whose encoded length falls
on each side of 126 and 65,536 bytes, and pings' short answers, arrive with minimal headers and the
exact bytes the reference encoder writes. A raw client reads the headers as sent.
"""

from __future__ import annotations

import struct

import pytest
from raw_ws import TEXT, RawWS, frame
from wsa_ws import new_id, running_server, uid

from wsa_fast import codec_py
from wsa_fast.message import COMPACT, SUBPROTOCOLS, VERBOSE, Message


@pytest.fixture(scope="module")
def server():
    with running_server() as srv:
        yield srv


def login(ws: RawWS, cid: str) -> None:
    ws.send(frame(codec_py.encode(Message("request", cid, "server", new_id(), method="auth@v1/login"))))
    assert codec_py.decode(ws.recv_text()).result == "success"


def raw_frame(ws: RawWS) -> tuple[bytes, bytes]:
    """The next frame's header and payload, as the server wrote them."""
    head = ws._take(2)
    n = head[1] & 0x7F
    if n == 126:
        head += ws._take(2)
        (n,) = struct.unpack("!H", head[2:])
    elif n == 127:
        head += ws._take(8)
        (n,) = struct.unpack("!Q", head[2:])
    return head, ws._take(n)


def minimal_header(n: int) -> bytes:
    if n < 126:
        return bytes([0x80 | TEXT, n])
    if n < 65536:
        return bytes([0x80 | TEXT, 126]) + struct.pack("!H", n)
    return bytes([0x80 | TEXT, 127]) + struct.pack("!Q", n)


@pytest.mark.parametrize("form", [VERBOSE, COMPACT])
def test_relayed_frames_around_each_length_class_have_minimal_headers(server, form) -> None:
    protocol = SUBPROTOCOLS[form]
    with RawWS(server.host, server.port, protocol) as tx, RawWS(server.host, server.port, protocol) as rx:
        src, dst = uid("ftx"), uid("frx")
        login(tx, src)
        login(rx, dst)
        base = len(codec_py.encode(Message("event", src, dst, "abcde", method="a@v1/b", params={"t": ""}), form))
        for target in [*range(118, 134), *range(65528, 65544)]:
            event = Message("event", src, dst, new_id(), method="a@v1/b", params={"t": "x" * (target - base)})
            tx.send(frame(codec_py.encode(event, form)))
            head, payload = raw_frame(rx)
            assert len(payload) == target
            assert head == minimal_header(target), (target, head)
            assert payload == codec_py.encode(event, form)


def test_ping_answers_have_minimal_headers(server) -> None:
    for form in (VERBOSE, COMPACT):
        with RawWS(server.host, server.port, SUBPROTOCOLS[form]) as ws:
            for _ in range(3):
                ping = Message("request", "", "server", new_id(), method="wsa@v1/ping")
                ws.send(frame(codec_py.encode(ping, form)))
                head, payload = raw_frame(ws)
                answer = Message("response", "server", "", ping.id, result="success")
                assert payload == codec_py.encode(answer, form)
                assert head == minimal_header(len(payload))
