"""The WSA messages the load generator sends, as pre-masked frame templates whose id is written per message."""

from __future__ import annotations

import json

from .._loadgen import client_frame

ID_LEN = 5
TEMPLATE_ID = "00000"
# What relay and broadcast send: an event with a text parameter (padded to --payload-bytes).
EVENT_METHOD = "chat@v1/message"


def message(compact: bool, frm: str, to: str, typ: str, method: str, params=None, id: str = TEMPLATE_ID) -> dict:
    """A message in the connection's form (docs/protocol.md section 2)."""
    if compact:
        body = {"m": method}
        if params is not None:
            body["p"] = params
        short_to = {"server": "s", "client": "c"}.get(to, to)
        return {"f": frm, "t": short_to, "y": {"request": "q", "event": "e"}[typ], "i": id, "p": body}
    body = {"method": method}
    if params is not None:
        body["params"] = params
    return {"from": frm, "to": to, "type": typ, "id": id, "payload": body}


def encode(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode()


def padded(build, payload_bytes: int) -> dict:
    """The message ``build(pad)`` makes, with the pad string grown so the JSON is ``payload_bytes`` long.

    0 means no pad at all; below the size with a one-character pad is a usage error (ValueError).
    """
    if payload_bytes <= 0:
        return build("")
    smallest = len(encode(build("x")))
    if payload_bytes < smallest:
        raise ValueError(
            f"--payload-bytes {payload_bytes} is below this scenario's smallest padded message ({smallest} bytes)"
        )
    return build("x" * (payload_bytes - smallest + 1))


def template(msg: dict, mask: bytes) -> tuple[bytes, int, bytes]:
    """(frame, where the id starts in it, the mask bytes over the id) for a message whose id is 00000."""
    payload = encode(msg)
    key = b'"id":"00000"' if "id" in msg else b'"i":"00000"'
    off = payload.index(key) + len(key) - ID_LEN - 1
    frame = client_frame(payload, mask)
    return frame, len(frame) - len(payload) + off, bytes(mask[(off + i) & 3] for i in range(ID_LEN))


def good_reply(compact: bool, kind: str, fail_code: str | None = None) -> tuple[bytes, bytes]:
    """The key and value (with its closing quote) a good delivery carries, for connections of this form;
    with ``fail_code``, a good response is a fail with that code (compact "c" holds a fail's code)."""
    if kind == "response" and fail_code:
        return (b'"c"', f'{fail_code}"'.encode()) if compact else (b'"code"', f'{fail_code}"'.encode())
    if kind == "response":
        return (b'"r"', b's"') if compact else (b'"result"', b'success"')
    return (b'"y"', b'e"') if compact else (b'"type"', b'event"')
