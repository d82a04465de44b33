"""An echo server on wsa-fast's frame layer, for the Autobahn|Testsuite fuzzing client.

Autobahn's server cases expect every message echoed back, which a WSA gateway never does.
This serves the gateway's own frame layer (the FrameGate in front of picows, as
``wsa-fast serve`` builds it) with a listener that echoes instead of routing; it answers
CLOSE and checks UTF-8 as wsa_fast._gateway.Connection does.

    python tests/autobahn/echo_server.py PORT [MAX_MESSAGE_SIZE]
"""

from __future__ import annotations

import asyncio
import logging
import sys

import uvloop
from picows import WSCloseCode, WSListener, WSMsgType

from wsa_fast._frame_gate import create_protocol
from wsa_fast._gateway import CLOSE_TIMEOUT


class Echo(WSListener):
    def __init__(self) -> None:
        self.transport = None
        self.fragments: list[bytes] = []
        self.kind = WSMsgType.TEXT
        self.closing = None

    def on_ws_connected(self, transport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport, frame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            if self.closing is None:
                if frame.payload_size == 0:
                    transport.send(WSMsgType.CLOSE, b"")
                else:
                    transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if self.closing is not None:
            return
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.kind, self.fragments = frame.msg_type, []
        elif frame.msg_type != WSMsgType.CONTINUATION:
            return
        self.fragments.append(frame.get_payload_as_bytes())
        if frame.fin:
            message = b"".join(self.fragments)
            if self.kind == WSMsgType.TEXT:
                try:
                    message.decode("utf-8")
                except UnicodeDecodeError:
                    self.send_close(1007, "invalid UTF-8")
                    return
            transport.send(self.kind, message)

    def send_close(self, code: int, reason: str) -> None:
        self.closing = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.underlying_transport.abort)
        self.transport.send_close(WSCloseCode(code) if code < 3000 else code, reason.encode())

    def on_ws_disconnected(self, transport) -> None:
        if self.closing is not None:
            self.closing.cancel()


async def main(port: int, max_message_size: int) -> None:
    loop = asyncio.get_running_loop()
    log = logging.getLogger("picows.autobahn")
    server = await loop.create_server(
        lambda: create_protocol(lambda request: Echo(), log, max_message_size, 2048, 10.0, CLOSE_TIMEOUT),
        "127.0.0.1",
        port,
    )
    print(f"echo on ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 16 * 1024 * 1024))
