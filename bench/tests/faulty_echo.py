"""An echo server that misbehaves on schedule, to prove the load generator's exactly-once accounting.

Counting messages across all connections, message n is dropped when n % DROP == 0, echoed
twice when n % DUP == 0, followed by a frame with no id when n % BAD == 0, and followed by
a copy whose id is `zzzzz` (never sent) when n % UNKNOWN == 0.
"""
import argparse
import re

import uvloop
from picows import WSListener, WSMsgType, ws_create_server

DROP, DUP, BAD, UNKNOWN = 997, 1009, 1013, 1019
ID = re.compile(rb'"id":"[a-z0-9]{5}"')


class Faulty(WSListener):
    count = 0

    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        Faulty.count += 1
        n = Faulty.count
        payload = frame.get_payload_as_bytes()
        if n % DROP == 0:
            return
        transport.send(WSMsgType.TEXT, payload)
        if n % DUP == 0:
            transport.send(WSMsgType.TEXT, payload)
        if n % BAD == 0:
            transport.send(WSMsgType.TEXT, b'{"nope":1}')
        if n % UNKNOWN == 0:
            transport.send(WSMsgType.TEXT, ID.sub(b'"id":"zzzzz"', payload))


async def main(port):
    server = await ws_create_server(lambda request: Faulty(), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    uvloop.run(main(ap.parse_args().port))
