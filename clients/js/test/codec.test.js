// The two forms on the wire and the ids, without a network: the gateway's own examples
// (docs/protocol.md section 2) must come out byte for byte.
import assert from "node:assert/strict";
import { test } from "node:test";

import { decode, encode, idFactory, isClientId, isMethod, WsaError } from "../dist/index.js";

const REQUEST = { type: "request", from: "alice", to: "bob", id: "a1b2c", method: "chat@v1/send", params: { text: "hi" } };
const VERBOSE_REQUEST = '{"from":"alice","to":"bob","type":"request","id":"a1b2c","payload":{"method":"chat@v1/send","params":{"text":"hi"}}}';
const COMPACT_REQUEST = '{"f":"alice","t":"bob","y":"q","i":"a1b2c","p":{"m":"chat@v1/send","p":{"text":"hi"}}}';
const FAIL = { type: "response", from: "server", to: "alice", id: "a1b2c", result: "fail", code: "NOT_FOUND" };
const COMPACT_FAIL = '{"f":"s","t":"alice","y":"r","i":"a1b2c","p":{"r":"f","c":"NOT_FOUND"}}';

test("a request in both forms is the protocol doc's example", () => {
  assert.equal(encode(REQUEST, "verbose"), VERBOSE_REQUEST);
  assert.equal(encode(REQUEST, "compact"), COMPACT_REQUEST);
  assert.deepEqual(decode(VERBOSE_REQUEST), REQUEST);
  assert.deepEqual(decode(COMPACT_REQUEST), REQUEST);
});

test("a fail response from the server, compact: server is s", () => {
  assert.equal(encode(FAIL, "compact"), COMPACT_FAIL);
  assert.deepEqual(decode(COMPACT_FAIL), FAIL);
  assert.deepEqual(decode(encode(FAIL, "verbose")), FAIL);
});

test("success responses keep receipt and data apart, null included", () => {
  const cases = [
    { type: "response", from: "bob", to: "alice", id: "x0001", result: "success" },
    { type: "response", from: "bob", to: "alice", id: "x0002", result: "success", receipt: "r-1" },
    { type: "response", from: "bob", to: "alice", id: "x0003", result: "success", receipt: null },
    { type: "response", from: "bob", to: "alice", id: "x0004", result: "success", data: null },
    { type: "response", from: "bob", to: "alice", id: "x0005", result: "success", receipt: "q\"\\", data: [1, { a: "é" }] },
    { type: "response", from: "bob", to: "alice", id: "x0006", result: "fail", code: "NOPE", data: { why: 1 } },
  ];
  for (const msg of cases) {
    for (const form of ["verbose", "compact"]) assert.deepEqual(decode(encode(msg, form)), msg, form);
  }
  assert.equal(encode(cases[1], "verbose"),
    '{"from":"bob","to":"alice","type":"response","id":"x0002","payload":{"result":"success","receipt":"r-1"}}');
  assert.equal(encode(cases[3], "compact"), '{"f":"bob","t":"alice","y":"r","i":"x0004","p":{"r":"s","d":null}}');
});

test("a broadcast event, compact: client is c; P is read as p", () => {
  const event = { type: "event", from: "alice", to: "client", id: "e0001", method: "chat@v1/shout" };
  assert.equal(encode(event, "compact"), '{"f":"alice","t":"c","y":"e","i":"e0001","p":{"m":"chat@v1/shout"}}');
  assert.deepEqual(decode('{"f":"alice","t":"c","y":"e","i":"e0001","P":{"m":"chat@v1/shout"}}'), event);
});

test("unreadable messages are refused", () => {
  for (const text of ["not json", "[]", '{"f":"s","t":"a","y":"g","i":"x","p":{}}',
    '{"from":"server","to":"a","type":"response","id":"x","payload":{"result":"maybe"}}',
    '{"from":"server","to":"a","type":"request","id":"x","payload":{"method":"a@v1/b","params":3}}']) {
    assert.throws(() => decode(text), { name: "DecodeError" }, text);
  }
});

test("params that are not JSON are refused before sending", () => {
  assert.throws(() => encode({ ...REQUEST, params: { big: 1n } }, "verbose"), TypeError);
});

// The gateway's grammar of ids (wsa_fast/grammar.py): ISO 8601 with up to 9 fraction digits, or [a-z0-9]{5}.
const ISO_ID = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/;

test("iso8601 ids: nine fraction digits, the current time, strictly increasing", () => {
  const next = idFactory("iso8601");
  const before = Date.now();
  const ids = Array.from({ length: 200_000 }, next);
  assert.ok(ids.every((id) => ISO_ID.test(id)), ids.find((id) => !ISO_ID.test(id)));
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1] < ids[i], `${ids[i - 1]} then ${ids[i]}`);
  assert.ok(Date.parse(ids[0]) >= before - 1 && Date.parse(ids[0]) <= Date.now());
});

test("short ids: [a-z0-9]{5}, distinct over a long run", () => {
  const next = idFactory("short");
  const ids = Array.from({ length: 100_000 }, next);
  assert.ok(ids.every((id) => /^[a-z0-9]{5}$/.test(id)));
  assert.equal(new Set(ids).size, ids.length);
  assert.throws(() => idFactory("uuid"), TypeError);
});

test("the grammar of client ids, methods and codes", () => {
  assert.ok(isClientId("alice") && isClientId("a.b:c@d-e_f") && !isClientId("server") && !isClientId("c"));
  assert.ok(!isClientId("") && !isClientId("x".repeat(65)) && !isClientId("a b"));
  assert.ok(isMethod("chat@v1/send") && !isMethod("chat/send") && !isMethod(`a@v1/${"x".repeat(124)}`));
  assert.equal(new WsaError("MY_CODE").code, "MY_CODE");
  assert.throws(() => new WsaError("lower"), TypeError);
});
