"""A WebSocket client written by hand on a plain socket, for what a library will not send.

Frames are built byte by byte (any opcode, FIN bit, length encoding, masking), several can
go out in one write (one read batch on the server) or be cut anywhere, and the server's
frames are read back as (opcode, payload). Used by the batch tests and the network fuzzer.
"""

from __future__ import annotations

import base64
import os
import socket
import struct

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
REPLY_TIMEOUT = 5.0


def frame(payload: bytes, opcode: int = TEXT, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One client frame: masked (a random key unless ``mask`` is given), length minimally encoded."""
    key = os.urandom(4) if mask is None else mask
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    if not n:
        return head + key
    mask = (key * (n // 4 + 1))[:n]
    return head + key + (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


def fragments(payload: bytes, cuts: list[int], opcode: int = TEXT) -> bytes:
    """``payload`` as one message in fragments cut at the given offsets (empty pieces allowed)."""
    bounds = [0, *cuts, len(payload)]
    pieces = [payload[a:b] for a, b in zip(bounds, bounds[1:])]
    out = b""
    for i, piece in enumerate(pieces):
        out += frame(piece, opcode if i == 0 else CONTINUATION, fin=i == len(pieces) - 1)
    return out


class RawWS:
    """One connection: ``send(bytes)`` writes raw bytes, ``recv()`` returns the next (opcode, payload)."""

    def __init__(self, host: str, port: int, subprotocol: str = "wsa.v1", timeout: float = REPLY_TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"upgrade refused: {head[:200]!r}")

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> tuple[int, bytes]:
        """The next whole frame from the server (servers do not mask)."""
        b0, b1 = self._take(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._take(8))
        return b0 & 0x0F, self._take(n)

    def recv_text(self) -> str:
        """The next data frame's text (pings and pongs skipped); a CLOSE raises ConnectionError."""
        while True:
            opcode, payload = self.recv()
            if opcode in (TEXT, BINARY):
                return payload.decode()
            if opcode == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise ConnectionError(f"closed by the server with {code}")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawWS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
