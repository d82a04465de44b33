"""The Python client (wsa_fast.client) on the far side of the JS client's tests.

Usage: python python_peer.py URL FORM ID. Logs in as ID, prints {"ready": ID}, then reads
one JSON command a line from stdin and prints one JSON line for each result:
  {"do": "request", "to": T, "method": M, "params": P} -> {"data": D, "receipt": R} or {"code": C}
  {"do": "event", "to": T, "method": M, "params": P}   (prints nothing)
  {"do": "quit"}
It answers py@v1/echo with what it got (and its form), py@v1/refuse with fail REFUSED, and
prints every event it receives as {"event": METHOD, "from": F, "to": T, "params": P}.
"""

from __future__ import annotations

import asyncio
import json
import sys

from wsa_fast.client import Client
from wsa_fast.errors import WSAError


def out(value: object) -> None:
    print(json.dumps(value), flush=True)


async def main(url: str, form: str, client_id: str) -> None:
    loop = asyncio.get_running_loop()
    async with Client.connect(url, form=form) as client:

        @client.on_request("py@v1/echo")
        def echo(msg):
            return {"params": msg.params, "from": msg.from_, "form": form}

        @client.on_request("py@v1/refuse")
        def refuse(msg):
            raise WSAError("REFUSED")

        await client.login(client_id)
        for method in ("chat@v1/shouted", "chat@v1/poke"):
            client.on_event(method)(
                lambda msg: out({"event": msg.method, "from": msg.from_, "to": msg.to, "params": msg.params})
            )
        out({"ready": client_id})
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            if command["do"] == "quit":
                return
            if command["do"] == "event":
                await client.send_event(command["method"], command.get("params"), to=command["to"])
                continue
            try:
                reply = await client.request(command["method"], command.get("params"), to=command["to"])
            except WSAError as error:
                out({"code": error.code})
            else:
                out({"data": reply.data, "receipt": reply.receipt})


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
