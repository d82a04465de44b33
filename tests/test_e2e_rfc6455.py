"""End to end, RFC 6455 to the letter, on raw sockets: docs/protocol.md section 1 and the close codes.

Every frame is written by hand, so each rule of the WebSocket layer is seen exactly as a
client's TCP stack sees it: the closing handshake (the gateway answers a CLOSE, keeps
reading after its own CLOSE until the peer's, then closes TCP first, with a FIN and no
reset), the frame rules (UTF-8, RSV bits, opcodes, fragment order, sizes) and the upgrade
(version 13 only, a bad request target is a 400).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from collections.abc import Iterator

import pytest
from gateway_process import GatewayProcess
from wsa_ws import REPLY_TIMEOUT, SILENCE, encode, new_id, running_server, uid

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX = 4096  # --max-message-size of the module's gateway


class RawWS:
    """A WebSocket client with nothing between the test and the socket."""

    def __init__(
        self, server: GatewayProcess, path: str = "/", headers: dict[str, str] | None = None, version: str = "13"
    ) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=REPLY_TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {server.host}:{server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            f"Sec-WebSocket-Version: {version}",
        ]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        self.cid = ""  # the bound client id, once logged in
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"the server closed during the upgrade: {self.buffer!r}"
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {
            name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)
        }

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        masked: bool = True,
        announce: int | None = None,
    ) -> None:
        """One frame; ``announce`` claims another payload length in the header (the payload is sent as is)."""
        length = len(payload) if announce is None else announce
        head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
        bit = 0x80 if masked else 0
        if length < 126:
            head += bytes([bit | length])
        elif length < 65536:
            head += bytes([bit | 126]) + struct.pack("!H", length)
        else:
            head += bytes([bit | 127]) + struct.pack("!Q", length)
        if masked:
            mask = os.urandom(4)
            head += mask
            payload = (
                bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                if len(payload) < 65536
                else _mask_fast(payload, mask)
            )
        self.sock.sendall(head + payload)

    def send_text(self, text: str) -> None:
        self.send_frame(TEXT, text.encode())

    def send_close(self, code: int | None = None, reason: bytes = b"") -> None:
        self.send_frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"the server closed TCP with {len(self.buffer)} of {n} bytes read")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recv_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read(2)
        assert not b1 & 0x80, "a server must not mask its frames"
        assert not b0 & 0x70, "the server sent RSV bits, yet negotiated no extension"
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return bool(b0 & 0x80), b0 & 0x0F, self._read(length)

    def recv_message(self) -> dict:
        fin, opcode, payload = self.recv_frame()
        assert fin and opcode == TEXT, (fin, opcode, payload)
        return json.loads(payload)

    def recv_close(self) -> tuple[int | None, str]:
        """Skip data frames to the server's CLOSE; returns its (code, reason), code None when it has none."""
        while True:
            fin, opcode, payload = self.recv_frame()
            if opcode == CLOSE:
                if not payload:
                    return None, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def server_closed_tcp(self) -> bool:
        """True once the server closed TCP in order (a FIN, all data read); a reset raises instead."""
        assert self.buffer == b"", f"unread bytes before the end: {self.buffer!r}"
        return self.sock.recv(65536) == b""

    def silent(self) -> None:
        """Nothing arrives, and the connection is still open, for a short while."""
        self.sock.settimeout(SILENCE)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        finally:
            self.sock.settimeout(REPLY_TIMEOUT)
        raise AssertionError(f"expected silence, got {data!r}")

    def ping(self) -> dict:
        self.send_text(encode("verbose", self.cid, "server", "request", (rid := new_id()), method="wsa@v1/ping"))
        reply = self.recv_message()
        assert reply["id"] == rid and reply["payload"] == {"result": "success"}, reply
        return reply

    def close(self) -> None:
        self.sock.close()


def _mask_fast(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


@pytest.fixture(scope="module")
def server() -> Iterator[GatewayProcess]:
    with running_server("--max-message-size", str(MAX), "--max-bad-messages", "3") as gw:
        yield gw


@pytest.fixture
def ws(server: GatewayProcess) -> Iterator[RawWS]:
    client = RawWS(server)
    assert client.status == 101
    yield client
    client.close()


def login(ws: RawWS, cid: str) -> None:
    ws.send_text(encode("verbose", cid, "server", "request", new_id(), method="auth@v1/login"))
    reply = ws.recv_message()
    assert reply["payload"] == {"result": "success", "receipt": cid}, reply
    ws.cid = cid


# ---------------------------------------------------------------- the closing handshake, peer first


def test_a_close_without_status_is_answered_without_status_then_tcp_closes(ws):
    """What every browser's ws.close() sends: the answer has no status either (the client sees 1005)."""
    ws.ping()
    ws.send_close()
    assert ws.recv_frame() == (True, CLOSE, b"")
    assert ws.server_closed_tcp()


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4001, 4999])
def test_a_close_with_a_valid_code_is_echoed(ws, code):
    ws.send_close(code, b"bye")
    assert ws.recv_close() == (code, "")
    assert ws.server_closed_tcp()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_a_close_with_a_code_not_for_the_wire_is_answered_1002(ws, code):
    ws.send_close(code)
    assert ws.recv_close() == (1002, "protocol error")
    assert ws.server_closed_tcp()


def test_a_close_with_a_one_byte_payload_is_answered_1002(ws):
    ws.send_frame(CLOSE, b"\x03")
    assert ws.recv_close() == (1002, "protocol error")
    assert ws.server_closed_tcp()


def test_a_close_reason_that_is_not_utf8_is_answered_1007(ws):
    ws.send_close(1000, b"\xff\xfe")
    assert ws.recv_close() == (1007, "invalid UTF-8")
    assert ws.server_closed_tcp()


def test_output_queued_before_the_peers_close_is_sent_before_the_answer(ws):
    ws.send_text(encode("verbose", "", "server", "request", "a1b2c", method="wsa@v1/ping"))
    ws.send_close(1000)
    assert ws.recv_message()["id"] == "a1b2c"
    assert ws.recv_close() == (1000, "")
    assert ws.server_closed_tcp()


# ---------------------------------------------------------------- the closing handshake, server first


def close_and_finish(ws: RawWS, code: int, reason: str) -> None:
    """The server sent CLOSE: it keeps the connection until ours, sends nothing more, then closes TCP."""
    assert ws.recv_close() == (code, reason)
    ws.send_frame(PING, b"still there?")
    ws.send_text(encode("verbose", "", "server", "request", new_id(), method="wsa@v1/ping"))
    ws.silent()
    ws.send_close(code)
    assert ws.server_closed_tcp()


def test_too_many_bad_messages_close_1008_and_the_server_waits_for_the_answer(ws):
    for _ in range(3):
        ws.send_text("not json")
    for _ in range(3):
        assert ws.recv_message()["payload"]["method"] == "wsa@v1/error"
    close_and_finish(ws, 1008, "too many invalid messages")


def test_a_frame_over_the_limit_is_skipped_to_its_end_then_closed_1009(ws):
    """Judged on its header, skipped without being stored; the CLOSE waits for its last byte.

    A browser still sending the message when the CLOSE arrives reports the close as not clean.
    """
    ws.ping()
    big = b"x" * (4 * MAX)
    ws.send_frame(TEXT, big[:100], announce=len(big))
    ws.silent()
    ws.sock.sendall(big[100:])
    assert ws.recv_close() == (1009, "message too big")
    ws.send_frame(PING, b"after the close")
    ws.silent()
    ws.send_close(1009)
    assert ws.server_closed_tcp()


def test_a_message_over_the_limit_in_fragments_is_skipped_to_its_last_then_closed_1009(ws):
    ws.send_frame(TEXT, b"[" + b"1," * (MAX // 4), fin=False)
    ws.send_frame(CONTINUATION, b"1," * (MAX // 2), fin=False)
    ws.send_frame(PING, b"skipped too")
    ws.silent()
    ws.send_frame(CONTINUATION, b"1]", fin=True)
    assert ws.recv_close() == (1009, "message too big")
    ws.send_close(1009)
    assert ws.server_closed_tcp()


@pytest.mark.slow  # waits out the close timeout
def test_an_oversized_message_that_never_ends_is_closed_after_the_close_timeout(ws):
    """The client stops half-way through: after 5 s the CLOSE goes out anyway."""
    ws.send_frame(BINARY, b"x" * 100, announce=10 * MAX)
    ws.sock.settimeout(30)
    assert ws.recv_close() == (1009, "message too big")
    ws.send_close(1009)
    assert ws.server_closed_tcp()


def test_a_replaced_login_closes_4001_and_waits_for_the_answer(server):
    cid = uid("twice")
    first, second = RawWS(server), RawWS(server)
    try:
        login(first, cid)
        login(second, cid)
        close_and_finish(first, 4001, "replaced")
        second.ping()
    finally:
        first.close()
        second.close()


@pytest.mark.slow  # waits out the close timeout
def test_a_peer_that_never_answers_the_close_is_cut_off(ws):
    """After the close timeout (5 s) the server drops a peer that keeps silent."""
    for _ in range(3):
        ws.send_text("not json")
    assert ws.recv_close() == (1008, "too many invalid messages")
    ws.sock.settimeout(30)
    try:
        assert ws.sock.recv(65536) == b""
    except ConnectionResetError:
        pass  # an abort: what a silent peer gets


def test_shutdown_closes_1001_and_waits_for_the_answer():
    with running_server() as gw:
        ws = RawWS(gw)
        try:
            ws.ping()
            gw.signal()
            assert ws.recv_close() == (1001, "going away")
            ws.send_close(1001)
            assert ws.server_closed_tcp()
        finally:
            ws.close()
        assert gw.wait() == 0


# ---------------------------------------------------------------- frames


def test_invalid_utf8_in_a_text_frame_closes_1007(ws):
    ws.send_frame(TEXT, b'{"from":"\xc3\x28"}')
    close_and_finish(ws, 1007, "invalid UTF-8")


def test_invalid_utf8_across_text_fragments_closes_1007(ws):
    ws.send_frame(TEXT, b'"\xe2\x82', fin=False)
    ws.send_frame(CONTINUATION, b'\x28"', fin=True)
    close_and_finish(ws, 1007, "invalid UTF-8")


def test_a_character_split_across_fragments_is_fine(ws):
    ping = encode("verbose", "", "server", "request", "euro1", method="wsa@v1/ping", params=["€"]).encode()
    cut = ping.index("€".encode()) + 1
    ws.send_frame(TEXT, ping[:cut], fin=False)
    ws.send_frame(CONTINUATION, ping[cut:], fin=True)
    assert ws.recv_message()["id"] == "euro1"


def test_invalid_utf8_in_a_binary_frame_is_an_invalid_message_and_the_connection_lives(ws):
    ws.send_frame(BINARY, b'{"from":"\xc3\x28"}')
    error = ws.recv_message()
    assert error["payload"]["method"] == "wsa@v1/error"
    assert error["payload"]["params"]["code"] == "INVALID_MESSAGE"
    ws.ping()


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_rsv_bits_close_1002(ws, rsv):
    ws.send_frame(TEXT, encode("verbose", "", "server", "request", new_id(), method="wsa@v1/ping").encode(), rsv=rsv)
    close_and_finish(ws, 1002, "protocol error")


def test_a_new_message_inside_a_fragmented_one_closes_1002(ws):
    ws.send_frame(TEXT, b'{"from":', fin=False)
    ws.send_frame(TEXT, encode("verbose", "", "server", "request", new_id(), method="wsa@v1/ping").encode())
    close_and_finish(ws, 1002, "protocol error")


def test_a_continuation_without_a_first_fragment_closes_1002(ws):
    ws.send_frame(CONTINUATION, b"{}")
    close_and_finish(ws, 1002, "protocol error")


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_a_reserved_opcode_closes_1002(ws, opcode):
    ws.send_frame(opcode, b"x")
    close_and_finish(ws, 1002, "protocol error")


def test_an_unmasked_frame_closes_1002(ws):
    ws.send_frame(TEXT, b"{}", masked=False)
    close_and_finish(ws, 1002, "protocol error")


def test_an_oversized_close_frame_closes_1002_and_its_payload_is_skipped(ws):
    """64 KiB announced for a CLOSE: refused on its header, its payload never stored."""
    ws.send_frame(CLOSE, b"\x03\xe8" + b"x" * 65534)
    assert ws.recv_close() == (1002, "protocol error")
    assert ws.server_closed_tcp()


def test_a_fragmented_control_frame_closes_1002(ws):
    ws.send_frame(PING, b"x", fin=False)
    close_and_finish(ws, 1002, "protocol error")


def test_a_control_frame_over_125_bytes_closes_1002(ws):
    ws.send_frame(PING, b"x" * 126)
    close_and_finish(ws, 1002, "protocol error")


def test_a_ping_between_fragments_is_answered_and_the_message_completes(ws):
    ping = encode("verbose", "", "server", "request", "frag1", method="wsa@v1/ping").encode()
    ws.send_frame(TEXT, ping[:10], fin=False)
    ws.send_frame(PING, b"hello")
    ws.send_frame(CONTINUATION, ping[10:], fin=True)
    assert ws.recv_frame() == (True, PONG, b"hello")
    assert ws.recv_message()["id"] == "frag1"


def test_the_gateway_answers_a_binary_message_in_a_text_frame(ws):
    ws.send_frame(BINARY, encode("verbose", "", "server", "request", "bin01", method="wsa@v1/ping").encode())
    fin, opcode, payload = ws.recv_frame()
    assert (fin, opcode) == (True, TEXT)
    assert json.loads(payload)["id"] == "bin01"


def test_frames_in_one_write_with_a_bad_one_last_are_answered_before_the_close(ws):
    """What came before the bad frame is handled; its answer precedes the CLOSE."""
    good = encode("verbose", "", "server", "request", "first", method="wsa@v1/ping").encode()
    mask = b"\x00\x00\x00\x00"
    frame = bytes([0x81, 0x80 | len(good)]) + mask + good
    bad = bytes([0xC1, 0x80 | 2]) + mask + b"{}"  # RSV1 set
    ws.sock.sendall(frame + bad)
    assert ws.recv_message()["id"] == "first"
    close_and_finish(ws, 1002, "protocol error")


# ---------------------------------------------------------------- the upgrade


def test_an_upgrade_with_another_version_gets_426_naming_13(server):
    ws = RawWS(server, version="8")
    try:
        assert ws.status == 426
        assert ws.headers["sec-websocket-version"] == "13"
    finally:
        ws.close()


def test_an_unparsable_request_target_gets_400(server):
    ws = RawWS(server, path="//[x")
    try:
        assert ws.status == 400
    finally:
        ws.close()


def test_no_extension_is_negotiated_and_an_unknown_subprotocol_is_not_answered(server):
    ws = RawWS(
        server,
        headers={
            "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
            "Sec-WebSocket-Protocol": "chat.v2",
        },
    )
    try:
        assert ws.status == 101
        assert "sec-websocket-extensions" not in ws.headers
        assert "sec-websocket-protocol" not in ws.headers
        ws.ping()
    finally:
        ws.close()
