"""An echo server that misbehaves on schedule, to prove the load generator's accounting (tests/test_bench_cli.py).

Counting messages across all connections, message n is dropped when n % DROP == 0, echoed
twice when n % DUP == 0, followed by a frame with no id when n % BAD == 0, and followed by
a copy whose id is `zzzzz` (never sent) when n % UNKNOWN == 0. ``--clean`` echoes every
message once. ``--stall-after N --stall-ms T`` blocks the whole server for T ms after the
N-th message, as a GC pause or a stuck handler would. ``--tls-cert/--tls-key`` serve wss.

Prints ``listening on ws://127.0.0.1:PORT`` once it accepts connections.
"""

import argparse
import re
import ssl
import time

import uvloop
from picows import WSListener, WSMsgType, ws_create_server

DROP, DUP, BAD, UNKNOWN = 997, 1009, 1013, 1019
ID = re.compile(rb'"id":"[a-z0-9]{5}"')


class Faulty(WSListener):
    count = 0
    options = None

    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        Faulty.count += 1
        n = Faulty.count
        o = Faulty.options
        payload = frame.get_payload_as_bytes()
        if n == o.stall_after:
            time.sleep(o.stall_ms / 1000)  # blocks the event loop: nothing is read or written meanwhile
        if o.clean:
            transport.send(WSMsgType.TEXT, payload)
            return
        if n % DROP == 0:
            return
        transport.send(WSMsgType.TEXT, payload)
        if n % DUP == 0:
            transport.send(WSMsgType.TEXT, payload)
        if n % BAD == 0:
            transport.send(WSMsgType.TEXT, b'{"nope":1}')
        if n % UNKNOWN == 0:
            transport.send(WSMsgType.TEXT, ID.sub(b'"id":"zzzzz"', payload))


async def main(options):
    Faulty.options = options
    context = None
    if options.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(options.tls_cert, options.tls_key)
    server = await ws_create_server(lambda request: Faulty(), "127.0.0.1", options.port, ssl=context)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {'wss' if context else 'ws'}://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--clean", action="store_true", help="echo every message once")
    ap.add_argument("--stall-after", type=int, default=0, help="block the server after this many messages")
    ap.add_argument("--stall-ms", type=float, default=100.0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    uvloop.run(main(ap.parse_args()))
