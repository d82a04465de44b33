"""A WSA gateway written by hand on the `websockets` library, the way a user would: the bench's Python peer.

Covers what the bench drives: ping, dev login (any valid id, no credentials), relay of
requests, responses and events between clients in either form, and broadcast to every
other logged-in client. A message to a client in the form it arrived in is forwarded
as the text received; otherwise it is re-encoded for the target's form. Broadcasts are
encoded once per form and sent with `websockets.broadcast`.

Run: python bench/peers/websockets_gateway.py --port 8765   (uvloop, orjson)
"""

from __future__ import annotations

import argparse
import re
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import broadcast, serve
from websockets.exceptions import ConnectionClosed

CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
RESERVED = {"server", "client", "s", "c"}

TYPE_SHORT = {"request": "q", "response": "r", "event": "e"}
TYPE_LONG = {v: k for k, v in TYPE_SHORT.items()}
PEER_SHORT = {"server": "s", "client": "c"}
PEER_LONG = {v: k for k, v in PEER_SHORT.items()}


def expand(m: dict) -> dict:
    """A compact message in verbose form."""
    typ = TYPE_LONG[m["y"]]
    p = m.get("p", m.get("P", {}))
    if typ == "response":
        payload = {"result": "success" if p["r"] == "s" else "fail"}
        if "c" in p:
            payload["receipt" if p["r"] == "s" else "code"] = p["c"]
    else:
        payload = {"method": p["m"]}
        if "p" in p:
            payload["params"] = p["p"]
    if "d" in p:
        payload["data"] = p["d"]
    return {
        "from": PEER_LONG.get(m["f"], m["f"]),
        "to": PEER_LONG.get(m["t"], m["t"]),
        "type": typ,
        "id": m["i"],
        "payload": payload,
    }


def shrink(m: dict) -> dict:
    """A verbose message in compact form."""
    pl = m["payload"]
    if m["type"] == "response":
        p = {"r": "s" if pl["result"] == "success" else "f"}
        c = pl.get("receipt", pl.get("code"))
        if c is not None or "receipt" in pl:
            p["c"] = c
    else:
        p = {"m": pl["method"]}
        if "params" in pl:
            p["p"] = pl["params"]
    if "data" in pl:
        p["d"] = pl["data"]
    return {
        "f": PEER_SHORT.get(m["from"], m["from"]),
        "t": PEER_SHORT.get(m["to"], m["to"]),
        "y": TYPE_SHORT[m["type"]],
        "i": m["id"],
        "p": p,
    }


class Client:
    __slots__ = ("ws", "compact", "cid")

    def __init__(self, ws, compact: bool):
        self.ws = ws
        self.compact = compact
        self.cid: str | None = None

    def encode(self, m: dict) -> bytes:
        return orjson.dumps(shrink(m) if self.compact else m)

    async def send(self, m: dict) -> None:
        await self.ws.send(self.encode(m), text=True)

    async def respond(self, req: dict, ok: bool, value=None) -> None:
        payload = {"result": "success"}
        if ok and value is not None:
            payload["receipt"] = value
        if not ok:
            payload = {"result": "fail", "code": value}
        to = self.cid if self.cid is not None else req.get("from", "")
        await self.send({"from": "server", "to": to, "type": "response", "id": req["id"], "payload": payload})


clients: dict[str, Client] = {}


def wants_compact(ws) -> bool:
    if ws.subprotocol is not None:
        return ws.subprotocol == "wsa.v1.compact"
    query = parse_qs(urlsplit(ws.request.path).query)
    return query.get("format", ["verbose"])[0] == "compact"


async def to_server(me: Client, m: dict) -> None:
    method = m["payload"].get("method")
    if m["type"] != "request":
        if m["type"] == "event":
            await me.respond(m, False, "METHOD_NOT_FOUND")
        return
    if method == "wsa@v1/ping":
        await me.respond(m, True)
    elif method == "auth@v1/login":
        cid = m["from"]
        if me.cid is not None:
            await me.respond(m, False, "ALREADY_AUTHENTICATED")
        elif not CLIENT_ID.fullmatch(cid) or cid in RESERVED:
            await me.respond(m, False, "PERMISSION_DENIED")
        else:
            old = clients.get(cid)
            clients[cid] = me
            me.cid = cid
            if old is not None:
                old.cid = None
                await old.ws.close(4001, "replaced")
            await me.respond(m, True, cid)
    elif me.cid is None:
        await me.respond(m, False, "UNAUTHENTICATED")
    else:
        await me.respond(m, False, "METHOD_NOT_FOUND")


async def handle(me: Client, raw: str | bytes, m: dict, arrived_compact: bool) -> None:
    to = m["to"]
    if to == "server":
        await to_server(me, m)
        return
    if me.cid is None:
        await me.respond(m, False, "UNAUTHENTICATED")
        return
    if m["from"] != me.cid:
        await me.respond(m, False, "PERMISSION_DENIED")
        return
    if to == "client":
        if m["type"] != "event":
            await me.respond(m, False, "INVALID_TARGET")
            return
        verbose, compact = [], []
        for c in clients.values():
            if c is not me:
                (compact if c.compact else verbose).append(c.ws)
        if verbose:
            broadcast(verbose, orjson.dumps(m).decode())
        if compact:
            broadcast(compact, orjson.dumps(shrink(m)).decode())
        return
    target = clients.get(to)
    if target is None:
        if m["type"] != "response":
            await me.respond(m, False, "NOT_FOUND")
        return
    try:
        if target.compact == arrived_compact:
            await target.ws.send(raw)
        else:
            await target.send(m)
    except ConnectionClosed:
        if m["type"] != "response":
            await me.respond(m, False, "GONE")


async def session(ws) -> None:
    me = Client(ws, wants_compact(ws))
    try:
        async for raw in ws:
            try:
                m = orjson.loads(raw)
                arrived_compact = "y" in m
                if arrived_compact:
                    m = expand(m)
                m["payload"]
                m["id"]
            except (ValueError, KeyError, TypeError, AttributeError):
                error = {"code": "INVALID_MESSAGE", "reason": "not a WSA message"}
                await me.send(
                    {
                        "from": "server",
                        "to": me.cid or "",
                        "type": "event",
                        "id": "error",
                        "payload": {"method": "wsa@v1/error", "params": error},
                    }
                )
                continue
            await handle(me, raw, m, arrived_compact)
    except ConnectionClosed:
        pass
    finally:
        if me.cid is not None and clients.get(me.cid) is me:
            del clients[me.cid]


def pick_subprotocol(ws, offered):
    """The first WSA form the client offers; none offered is fine (form then comes from the query)."""
    for proto in offered:
        if proto in ("wsa.v1", "wsa.v1.compact"):
            return proto
    return None


async def main(host: str, port: int) -> None:
    async with serve(session, host, port, select_subprotocol=pick_subprotocol) as server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    import uvloop

    try:
        uvloop.run(main(args.host, args.port))
    except KeyboardInterrupt:
        pass
