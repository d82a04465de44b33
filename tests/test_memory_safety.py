"""Lifetimes in the compiled code, checked where a user would see them go wrong.

A view of a freed temporary is invisible with pymalloc (the freed bytes usually survive),
so the server here runs with ``PYTHONMALLOC=debug``, which overwrites freed memory: a
lookup through a dangling view then finds nothing. The zero-length copies are undefined
behaviour only a sanitizer sees: ``make sanitize`` runs these same tests on an ASan+UBSan
build, where the old code aborted. Two threads decoding at once must never mix messages.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from raw_ws import BINARY, TEXT, RawWS, fragments, frame
from wsa_ws import Clients, aio, expect_fail, expect_response, new_id, running_server, uid

from wsa_fast import _codec as compiled
from wsa_fast import codec_py as pure
from wsa_fast.message import DecodeError


@pytest.fixture(scope="module")
def debug_malloc_server():
    with running_server("--app", "tests.apps.faulty_app:app", env={"PYTHONMALLOC": "debug"}) as srv:
        yield srv


@aio
async def test_app_finds_a_connected_client_by_id_under_a_debug_allocator(debug_malloc_server):
    """App.send_event and is_connected look the id up through a view of its encoded bytes."""
    async with Clients(debug_malloc_server) as cl:
        a, b = await cl.bound("verbose", "compact")
        id = await a.request("server", "faulty@v1/connected", {"target": b.cid})
        expect_response(await a.recv(), id=id, to=a.cid, data=True)
        id = await a.request("server", "faulty@v1/connected", {"target": uid("nobody")})
        expect_response(await a.recv(), id=id, to=a.cid, data=False)


@pytest.fixture(scope="module")
def debug_malloc_protocol_server():
    with running_server("--app", "tests.apps.protocol_app:app", env={"PYTHONMALLOC": "debug"}) as srv:
        yield srv


@aio
async def test_app_send_event_reaches_a_connected_client_under_a_debug_allocator(debug_malloc_protocol_server):
    async with Clients(debug_malloc_protocol_server) as cl:
        a, b = await cl.bound("verbose", "compact")
        id = await a.request("server", "test@v1/tell", {"target": b.cid, "method": "news@v1/item", "params": [1]})
        expect_response(await a.recv(), id=id, to=a.cid)
        event = await b.recv()
        assert event["payload"] == {"method": "news@v1/item", "params": [1]}, event
        id = await a.request("server", "test@v1/tell", {"target": uid("nobody"), "method": "news@v1/item"})
        expect_fail(await a.recv(), "NOT_FOUND", id=id, to=a.cid)


def test_first_decode_of_a_process_may_be_empty(tmp_path):
    """The parser's buffer is not yet allocated at the first decode: an empty input must not copy into NULL."""
    code = (
        "from wsa_fast import _codec\n"
        "from wsa_fast.message import DecodeError\n"
        "try:\n    _codec.decode(b'')\nexcept DecodeError as e:\n    print('refused:', e.reason)\n"
    )
    # Run outside the source tree, so that the installed build is the one imported (make sanitize's).
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "refused: not JSON\n"


@pytest.fixture(scope="module")
def server():
    with running_server() as srv:
        yield srv


@pytest.mark.parametrize(
    "cuts", [[0], [0, 0], [5, 5], ["end"]], ids=["empty-first", "two-empty", "empty-middle", "empty-last"]
)
def test_a_message_with_empty_fragments_is_reassembled(server, cuts):
    """An empty fragment (first, repeated, in the middle or last) is appended as nothing at all."""
    with RawWS(server.host, server.port) as ws:
        me = uid("frag")
        ws.send(
            frame(
                b'{"from":"%s","to":"server","type":"request","id":"log01","payload":{"method":"auth@v1/login"}}'
                % me.encode()
            )
        )
        assert '"success"' in ws.recv_text()
        id = new_id()
        ping = b'{"from":"%s","to":"server","type":"request","id":"%s","payload":{"method":"wsa@v1/ping"}}' % (
            me.encode(),
            id.encode(),
        )
        cuts = [len(ping) if c == "end" else c for c in cuts]
        ws.send(fragments(ping, cuts))
        reply = ws.recv_text()
        assert f'"id":"{id}"' in reply and '"result":"success"' in reply, reply


def test_whole_messages_of_every_length_in_one_write_arrive_intact(server):
    """Many whole messages in one read, unmasked by the gateway's kernel (wsa_fast/picows_unmask.py): events
    of every length from 0 to 300 bytes of text (every head and tail around its 64-byte blocks), text and
    binary frames, a fragmented message and one cut across two writes among them, all arrive intact."""
    with RawWS(server.host, server.port) as a, RawWS(server.host, server.port) as b:
        ids = uid("sa"), uid("sb")
        for ws, me in zip((a, b), ids):
            login = b'{"from":"%s","to":"server","type":"request","id":"log01","payload":{"method":"auth@v1/login"}}'
            ws.send(frame(login % me.encode()))
            assert '"success"' in ws.recv_text()

        def event(k: int) -> bytes:
            text = "".join(chr(ord("a") + (k + i) % 26) for i in range(k))
            body = {"from": ids[0], "to": ids[1], "type": "event", "id": f"ev{k:03d}"}
            body["payload"] = {"method": "chat@v1/message", "params": {"k": k, "text": text}}
            return json.dumps(body, separators=(",", ":")).encode()

        burst = b"".join(frame(event(k), BINARY if k % 3 == 0 else TEXT) for k in range(301))
        burst += fragments(event(301), [7, 40]) + frame(event(302)) + frame(event(303))
        cut = len(burst) - len(frame(event(303))) // 2
        a.send(burst[:cut])
        a.send(burst[cut:] + frame(event(304)))
        for k in range(305):
            got = json.loads(b.recv_text())
            text = "".join(chr(ord("a") + (k + i) % 26) for i in range(k))
            assert got["payload"]["params"] == {"k": k, "text": text}, (k, got)


@pytest.mark.slow  # two threads decoding for seconds
def test_two_threads_decoding_at_once_never_mix_their_messages():
    """Each thread decodes its own messages; every result must be what the reference codec reads."""

    def messages(who: str) -> list[bytes]:
        return [
            (
                b'{"from":"%s","to":"server","type":"request","id":"%05d","payload":'
                b'{"method":"t@v1/%s","params":{"n":%d,"pad":"%s"}}}'
                % (who.encode(), i, who.encode(), i, who.encode() * (i % 40))
            )
            for i in range(20000)
        ]

    inputs = {"alice": messages("alice"), "bob": messages("bob")}
    expected = {who: [pure.decode(m) for m in ms] for who, ms in inputs.items()}
    wrong: dict[str, int] = {}
    start = threading.Barrier(2)

    def run(who: str) -> None:
        start.wait()
        bad = 0
        for raw, want in zip(inputs[who], expected[who]):
            try:
                got = compiled.decode(raw)
            except DecodeError:
                got = None
            bad += got != want
        wrong[who] = bad

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=run, args=(who,)) for who in inputs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert wrong == {"alice": 0, "bob": 0}
