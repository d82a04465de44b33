"""A network fuzzer: a real ``wsa-fast serve`` fed hostile traffic over hand-built WebSocket frames.

    python tests/fuzz/network.py --seconds N [--seed S] [--findings DIR]
    python tests/fuzz/network.py --replay FILE.json       (one saved round, e.g. from the corpus)

Each round is one scenario, drawn from its own seed (saved with any finding, so a round
replays alone):

- ``burst``: mutated messages (flipped, cut, spliced, tokens inserted) sent by a bound
  client as text or binary frames, some in fragments cut anywhere (empty pieces, inside
  a UTF-8 character, a ping between fragments), the whole byte stream cut into TCP writes
  anywhere (inside frame headers too), then a ping. codec_py predicts which ids get a
  response: each must get exactly one, and every frame the server sends must decode.
- ``lengths``: a relayed event of every frame length class (125, 126, 65535, 65536 and
  1 MiB, each -1/0/+1) arrives byte for byte, whole or in fragments; 1 MiB + 1 closes 1009.
- ``reset``: a connection cut (RST or FIN) in the middle of a frame or of a fragmented message.
- ``handlers``: one read batch whose handlers close their own connection, close another
  client's, or broadcast, sync or async (tests/apps/fuzz_app.py).

After every round a watching client must still get its ping answered. The server is the
``wsa-fast`` beside this Python: under ``make fuzz`` an ASan+UBSan build whose reports go
to files the target checks. Findings are written as JSON rounds to --findings.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import random
import socket
import struct
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

from gateway_process import GatewayProcess  # noqa: E402
from raw_ws import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawWS, frame  # noqa: E402

from wsa_fast import codec_py  # noqa: E402
from wsa_fast.message import DecodeError  # noqa: E402

CORPUS = TESTS / "fuzz" / "corpus" / "network"
MAX_MESSAGE = 1 << 20
# Handlers fail on purpose at times (a NaN to broadcast): their tracebacks are expected, a sanitizer
# report is not (GatewayProcess.stop fails on one whatever allow_tracebacks says).
# Rate limits off: the oracle predicts the protocol's answers, and a burst would also draw RATE_LIMITED.
SERVER_ARGS = (
    "--app",
    "tests.apps.fuzz_app:app",
    "--max-bad-messages",
    "1000000000",
    "--request-timeout",
    "3600",
    "--drain-timeout",
    "0.5",
    "--limits",
    "off",
)
EVENT_HANDLERS = {"fuzz@v1/shout"}
LENGTHS = [n + d for n in (125, 126, 65535, 65536, MAX_MESSAGE) for d in (-1, 0, 1)]
TOKENS = [
    b'"',
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"null",
    b"true",
    b"-0",
    b"1e999",
    b'"from"',
    b'"f"',
    b'"payload"',
    b'"p"',
    b'"id"',
    b'"i"',
    b'"server"',
    b'"client"',
    b'""',
    b'"request"',
    b'"response"',
    b'"event"',
    b'"q"',
    b'"r"',
    b'"e"',
    b'"s"',
    b'"c"',
    b'"result"',
    b'"fail"',
    b'"success"',
    b'"code"',
    b'"receipt"',
    b'"data"',
    b'"method"',
    b'"params"',
    "é".encode(),
    "😀".encode(),
    b"\xff",
    b"\xc3",
    b"\x00",
    b" ",
    b"\t\n",
    b"2024-02-29T23:59:60.123456789+23:59",
]
_ids = itertools.count()


class Finding(Exception):
    """The server broke a promise; the message says which."""


def new_id() -> str:
    """Ids of the fuzzer's own pings: a pattern no seed uses."""
    n = next(_ids)
    return "z" + "".join("0123456789abcdefghijklmnopqrstuvwxyz"[(n // 36**i) % 36] for i in range(4))


def envelope(frm: str, to: str, type: str, id: str, payload: dict, compact: bool = False) -> bytes:
    if compact:
        short = {"server": "s", "client": "c"}
        return json.dumps(
            {
                "f": short.get(frm, frm),
                "t": short.get(to, to),
                "y": type[0] if type != "request" else "q",
                "i": id,
                "p": payload,
            },
            separators=(",", ":"),
        ).encode()
    return json.dumps(
        {"from": frm, "to": to, "type": type, "id": id, "payload": payload}, separators=(",", ":"), ensure_ascii=False
    ).encode()


def seeds(me: str) -> list[bytes]:
    """Messages from ``me`` that reach every branch of the gateway, in both forms."""
    out = []
    for compact in (False, True):
        m, p, r, c = ("m", "p", "r", "c") if compact else ("method", "params", "result", "code")
        out += [
            envelope(me, "server", "request", "abcde", {m: "wsa@v1/ping"}, compact),
            envelope(me, "server", "request", "abcdf", {m: "auth@v1/login"}, compact),
            envelope(
                me,
                "server",
                "request",
                "2024-01-02T03:04:05.5Z",
                {m: "fuzz@v1/echo", p: {"x": [1, "é", None]}},
                compact,
            ),
            envelope(me, "server", "request", "bcdef", {m: "fuzz@v1/broadcast", p: [1]}, compact),
            envelope(me, "server", "event", "cdefg", {m: "fuzz@v1/shout", p: {"a": 1}}, compact),
            envelope(me, "server", "event", "cdefh", {m: "fuzz@v1/nothing"}, compact),
            envelope(me, "client", "event", "defgh", {m: "chat@v1/all", p: ["hi"]}, compact),
            envelope(me, "client", "request", "defgi", {m: "chat@v1/all"}, compact),
            envelope(me, "nobody-here", "request", "efghi", {m: "chat@v1/x", p: {}}, compact),
            envelope(me, "someone", "response", "fghij", {r: "fail" if not compact else "f", c: "NOT_FOUND"}, compact),
            envelope("server", "server", "request", "ghijk", {m: "wsa@v1/ping"}, compact),
            envelope("intruder", "server", "event", "hijkl", {m: "wsa@v1/x"}, compact),
        ]
    out.append(
        b'{"from":"%s","to":"server","type":"request","id":"ijklm","payload":{"method":"bad method"}}' % me.encode()
    )
    out.append(b"[1,2,3]")
    return out


def mutate(raw: bytes, pool: list[bytes], rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 6))):
        op = rng.randrange(7)
        i = rng.randrange(len(data) + 1)
        j = min(len(data), i + rng.randrange(1, 12))
        if op == 0 and data:
            data[min(i, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del data[i:j]
        elif op == 2:
            data[i:i] = rng.choice(TOKENS)
        elif op == 3:
            data[i:i] = data[i:j]
        elif op == 4:
            del data[i:]
        elif op == 5:
            other = rng.choice(pool)
            k = rng.randrange(len(other) + 1)
            data[i:] = other[k:]
        elif data:
            digit = rng.randrange(len(data))
            if 0x30 <= data[digit] <= 0x39:
                data[digit] = 0x30 + rng.randrange(10)
    return bytes(data)


def encodable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


def answered_id(raw: bytes, me: str) -> str | None:
    """The id the gateway must answer ``raw`` (sent by ``me``) at exactly once, or None; "?" if unknowable."""
    try:
        m = codec_py.decode(raw)
    except DecodeError as e:
        return e.id if e.id is not None and e.type != "response" else None
    if m.type == "response":
        return None
    if m.from_ != me:
        return m.id
    if m.to == "server":
        if m.method.startswith("fuzz@v1/close"):
            return "?"
        if m.type == "event" and m.method in EVENT_HANDLERS:
            # The handler broadcasts its params: it raises (fail INTERNAL_ERROR) on a NaN or infinity.
            return None if encodable(m.params) else m.id
        return m.id
    if m.to == "client":
        return m.id if m.type == "request" else None
    return "?" if m.to == me else m.id


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def frames_for(message: bytes, rng: random.Random, opcode: int | None = None) -> bytes:
    """One message as a frame or as fragments cut anywhere, a ping sometimes between them.

    Text unless told otherwise, but binary when it is not UTF-8 (a text message would close 1007).
    """
    if opcode is None:
        opcode = TEXT if is_utf8(message) and rng.random() < 0.9 else BINARY
    if rng.random() < 0.7 or not message:
        return frame(message, opcode)
    cuts = sorted(rng.randrange(len(message) + 1) for _ in range(rng.randrange(1, 5)))
    bounds = [0, *cuts, len(message)]
    out = b""
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        out += frame(message[a:b], opcode if k == 0 else CONTINUATION, fin=k == len(bounds) - 2)
        if k < len(bounds) - 2 and rng.random() < 0.2:
            out += frame(b"fz", PING)
    return out


def send_cut(ws: RawWS, data: bytes, rng: random.Random) -> None:
    """Write ``data`` whole, or in pieces cut anywhere with a pause so each is read on its own."""
    if rng.random() < 0.6:
        ws.send(data)
        return
    pos = 0
    while pos < len(data):
        n = rng.choice((1, 1, 2, 3, 7, 64, 1000, len(data)))
        ws.send(data[pos : pos + n])
        pos += n
        time.sleep(0.0005)


def server_message(payload: bytes) -> dict:
    """{type, id} of a message from the server, which must decode (or echo a bad id in INVALID_MESSAGE)."""
    try:
        msg = codec_py.decode(payload)
        return {"type": msg.type, "id": msg.id}
    except DecodeError as e:
        problem = e.reason
    # A bad message is answered at the id it carried, valid or not (docs/protocol.md section 3).
    obj = json.loads(payload)
    if (
        list(obj) == ["from", "to", "type", "id", "payload"]
        and obj["from"] == "server"
        and obj["type"] == "response"
        and obj["payload"] == {"result": "fail", "code": "INVALID_MESSAGE"}
        and isinstance(obj["id"], str)
    ):
        return {"type": "response", "id": obj["id"]}
    raise Finding(f"the server sent an invalid message ({problem}): {payload[:300]!r}")


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def read_until(ws: RawWS, ping_id: str | None, closes_with: int | None = None) -> list[dict]:
    """Every message the server sends until its answer to ``ping_id`` (or its CLOSE with ``closes_with``)."""
    got = []
    while True:
        opcode, payload = ws.recv()
        if opcode == CLOSE:
            if closes_with is not None and close_code(payload) == closes_with:
                return got
            raise Finding(f"closed with {close_code(payload)} before answering ping {ping_id}")
        if opcode not in (TEXT, BINARY):
            continue
        msg = server_message(payload)
        if msg["type"] == "response" and msg["id"] == ping_id:
            return got
        got.append(msg)


def ping(ws: RawWS, me: str) -> list[dict]:
    id = new_id()
    ws.send(frame(envelope(me, "server", "request", id, {"method": "wsa@v1/ping"})))
    return read_until(ws, id)


class Fuzzer:
    def __init__(self, server: GatewayProcess) -> None:
        self.server = server
        self.counts: Counter = Counter()
        self.sent: dict = {}  # what the current round sent, saved with a finding

    def connect(self, prefix: str = "fz") -> tuple[RawWS, str]:
        ws = RawWS(self.server.host, self.server.port, timeout=30)
        me = f"{prefix}-{next(_ids)}"
        ws.send(frame(envelope(me, "server", "request", new_id(), {"method": "auth@v1/login"})))
        reply = json.loads(ws.recv_text())
        if reply["payload"].get("result") != "success":
            raise Finding(f"login refused: {reply}")
        return ws, me

    # ---- scenarios; each gets its own Random and returns what it sent, for a finding

    def burst(self, rng: random.Random, messages: list[bytes] | None = None) -> dict:
        ws, me = self.connect()
        with ws:
            if messages is None:
                pool = seeds(me)
                messages = [
                    mutate(rng.choice(pool), pool, rng) if rng.random() < 0.8 else rng.choice(pool)
                    for _ in range(rng.randrange(1, 40))
                ]
            else:
                messages = [m.replace(b"@ME@", me.encode()) for m in messages]
            self.sent = {"messages": [m.replace(me.encode(), b"@ME@") for m in messages]}
            expected = Counter(answered_id(m, me) for m in messages)
            unknowable = expected.pop("?", 0)
            expected.pop(None, None)
            data = b"".join(frames_for(m, rng) for m in messages)
            # Now and then the burst ends with a text message that is not UTF-8: answered by 1007.
            bad_text = rng.random() < 0.05
            if bad_text:
                ping_id = None
                data += frames_for(b'{"from":"\xff"}', rng, TEXT)
            else:
                ping_id = new_id()
                data += frame(envelope(me, "server", "request", ping_id, {"method": "wsa@v1/ping"}))
            send_cut(ws, data, rng)
            got = read_until(ws, ping_id, closes_with=1007 if bad_text else None)
            answers = Counter(m["id"] for m in got if m["type"] == "response")
            if not unknowable and answers != expected:
                raise Finding(f"answers {dict(answers)} != expected {dict(expected)}")
            self.counts["messages"] += len(messages)
        return self.sent

    def lengths(self, rng: random.Random) -> dict:
        (a, me), (b, peer) = self.connect(), self.connect()
        with a, b:
            for n in rng.sample(LENGTHS, k=4):
                head = envelope(me, peer, "event", "lngth", {"method": "fuzz@v1/len", "params": ["@"]})
                message = head.replace(b'"@"', b'"' + b"x" * (n - len(head) + 1) + b'"')
                assert len(message) == n
                if n > MAX_MESSAGE:
                    # The server closes as soon as it knows; the rest of our write may meet a reset.
                    try:
                        send_cut(a, frames_for(message, rng), rng)
                        opcode, payload = a.recv()
                        while opcode == PONG:  # the answer to a ping between fragments
                            opcode, payload = a.recv()
                    except OSError:
                        opcode, payload = CLOSE, struct.pack("!H", 1009)
                    if opcode != CLOSE or payload[:2] != struct.pack("!H", 1009):
                        raise Finding(f"a {n}-byte message was not refused with 1009: {opcode} {payload[:20]!r}")
                    a.close()
                    a, me = self.connect()
                    continue
                send_cut(a, frames_for(message, rng), rng)
                opcode, payload = b.recv()
                if payload != message:
                    raise Finding(f"a {n}-byte event arrived as {len(payload)} bytes (opcode {opcode})")
                self.counts[f"length {n}"] += 1
            ping(a, me)
            ping(b, peer)
            a.close()
        return {}

    def reset(self, rng: random.Random) -> dict:
        ws, me = self.connect()
        message = envelope(
            me, "server", "request", "reset", {"method": "fuzz@v1/echo", "params": ["y" * rng.choice((10, 200, 70000))]}
        )
        data = frames_for(message, rng)
        cut = rng.randrange(1, len(data))
        ws.send(data[:cut])
        if rng.random() < 0.5:
            ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        ws.close()
        self.counts["resets"] += 1
        return {}

    def handlers(self, rng: random.Random) -> dict:
        (a, me), (b, peer), (c, third) = self.connect(), self.connect(), self.connect()
        with a, b, c:
            plan = rng.sample(
                [
                    "echo",
                    "broadcast",
                    "broadcast_async",
                    "close_peer",
                    "close_peer_async",
                    "shout",
                    "close",
                    "close_async",
                ],
                k=rng.randrange(2, 7),
            )
            data = b""
            ids = []
            for i, what in enumerate(plan):
                id = new_id()
                if what == "shout":
                    data += frame(envelope(me, "server", "event", id, {"method": "fuzz@v1/shout", "params": [i]}))
                    continue
                params = {"peer": peer} if what.startswith("close_peer") else [i]
                data += frame(envelope(me, "server", "request", id, {"method": f"fuzz@v1/{what}", "params": params}))
                ids.append((id, what))
            closes_self = any(what.startswith("close") and not what.startswith("close_peer") for what in plan)
            ping_id = new_id()
            data += frame(envelope(me, "server", "request", ping_id, {"method": "wsa@v1/ping"}))
            send_cut(a, data, rng)
            if closes_self:
                while True:
                    try:
                        opcode, payload = a.recv()
                    except ConnectionError:
                        break
                    if opcode == CLOSE:
                        break
            else:
                # Async handlers answer after the ping: read until every id is answered, then
                # one more ping, so that a second answer to any of them would show.
                answers: Counter = Counter()
                waiting = {id for id, _ in ids} | {ping_id}
                while waiting:
                    opcode, payload = a.recv()
                    if opcode in (TEXT, BINARY):
                        msg = server_message(payload)
                        if msg["type"] == "response":
                            answers[msg["id"]] += 1
                            waiting.discard(msg["id"])
                    elif opcode == CLOSE:
                        raise Finding(f"handler batch {plan}: closed, still waiting for {waiting}")
                answers.update(m["id"] for m in ping(a, me) if m["type"] == "response")
                del answers[ping_id]
                if answers != Counter(id for id, _ in ids):
                    raise Finding(f"handler batch {plan}: answers {dict(answers)}")
            ping(c, third)
            self.counts["handler batches"] += 1
        return {"plan": plan}

    SCENARIOS = ("burst", "burst", "burst", "lengths", "reset", "handlers")

    def round(self, seed: int, scenario: str, messages: list[bytes] | None = None) -> dict:
        rng = random.Random(seed)
        self.sent = {}
        self.counts[scenario] += 1
        if scenario == "burst":
            return self.burst(rng, messages)
        return getattr(self, scenario)(rng)


def save(path: Path, scenario: str, seed: int, sent: dict, problem: str = "") -> None:
    record: dict[str, Any] = {"scenario": scenario, "seed": seed, "problem": problem}
    if "messages" in sent:
        record["messages"] = [base64.b64encode(m).decode() for m in sent["messages"]]
    path.write_text(json.dumps(record, indent=1) + "\n")


def load(path: Path) -> tuple[str, int, list[bytes] | None]:
    record = json.loads(path.read_text())
    messages = [base64.b64decode(m) for m in record["messages"]] if "messages" in record else None
    return record["scenario"], record["seed"], messages


def run(seconds: float, seed: int, findings: Path, keep: int = 0) -> int:
    findings.mkdir(parents=True, exist_ok=True)
    master = random.Random(seed)
    found = 0
    start = time.monotonic()
    with GatewayProcess(*SERVER_ARGS, start_timeout=60, allow_tracebacks=True) as server:
        fuzzer = Fuzzer(server)
        watch, watcher = fuzzer.connect("watch")
        rounds = 0
        while time.monotonic() - start < seconds:
            round_seed = master.getrandbits(32)
            scenario = master.choice(Fuzzer.SCENARIOS)
            sent: dict = {}
            try:
                sent = fuzzer.round(round_seed, scenario)
                ping(watch, watcher)
            except (Finding, OSError) as problem:
                found += 1
                save(
                    findings / f"finding-{scenario}-{round_seed}.json", scenario, round_seed, fuzzer.sent, repr(problem)
                )
                print(f"FINDING in {scenario} round {round_seed}: {problem!r}", flush=True)
                if server.proc.poll() is not None:
                    print(server.log[-5000:], flush=True)
                    break
                watch.close()
                watch, watcher = fuzzer.connect("watch")
            if rounds < keep:
                save(findings / f"round-{scenario}-{round_seed}.json", scenario, round_seed, sent)
            rounds += 1
        watch.close()
    elapsed = time.monotonic() - start
    print(
        f"network fuzzer: {rounds} rounds in {elapsed:.0f}s (seed {seed}), {found} findings; "
        + ", ".join(f"{k}: {v}" for k, v in sorted(fuzzer.counts.items())),
        flush=True,
    )
    return 1 if found else 0


def replay(path: Path) -> int:
    scenario, seed, messages = load(path)
    with GatewayProcess(*SERVER_ARGS, start_timeout=60, allow_tracebacks=True) as server:
        Fuzzer(server).round(seed, scenario, messages)
    print(f"replayed {path.name}: ok")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--findings", type=Path, default=Path("fuzz-findings"))
    parser.add_argument("--keep", type=int, default=0, help="also save the first N rounds (to grow the corpus)")
    parser.add_argument("--replay", type=Path)
    args = parser.parse_args()
    if args.replay:
        return replay(args.replay)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    return run(args.seconds, seed, args.findings, args.keep)


if __name__ == "__main__":
    sys.exit(main())
