// Reconnection (opt-in): a gateway restart, re-login with the same credentials, backoff with
// jitter, UNAVAILABLE while disconnected; and a replaced connection (4001), which stays closed.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, test } from "node:test";

import { connect, FORMS, Gateway, loggedIn, nextEvent } from "./support.js";

const BACKOFF = { initialDelayMs: 20, maxDelayMs: 400, factor: 2, jitter: 0.5 };

const running = [];
const clients = [];
async function start(...args) {
  const gateway = await Gateway.start(...args);
  running.push(gateway);
  return gateway;
}
async function client(promise) {
  const c = await promise;
  clients.push(c);
  return c;
}
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(running.splice(0).map((g) => g.stop()));
});

/** Every event the client emits, in order. */
function record(c) {
  const seen = [];
  for (const name of ["open", "close", "reconnecting", "replaced", "error"]) c.on(name, (detail) => seen.push({ name, ...detail }));
  return seen;
}

function tokenFile(lines) {
  const path = join(mkdtempSync(join(tmpdir(), "wsa-js-")), "tokens");
  writeFileSync(path, lines.join("\n") + "\n");
  return path;
}

for (const form of FORMS) {
  test(`${form}: after a gateway restart the client reconnects, logs in again, and requests flow`, async () => {
    const first = await start();
    const port = String(first.port);
    const a = await client(loggedIn(first.url, "ra", { form, reconnect: BACKOFF }));
    const b = await client(loggedIn(first.url, "rb", { form: form === "verbose" ? "compact" : "verbose", reconnect: BACKOFF }));
    b.onRequest("echo@v1/echo", (params) => params);
    assert.deepEqual((await a.request("rb", "echo@v1/echo", [1])).data, [1]);
    const events = record(a);

    const closed = nextEvent(a, "close");
    const twoAttempts = new Promise((resolve) => a.on("reconnecting", (d) => d.attempt === 2 && resolve()));
    await first.stop();
    const close = await closed;
    assert.equal(close.code, 1001, "the gateway closes its clients with 1001 when it stops");
    assert.equal(close.wasClean, true);
    assert.equal(close.willReconnect, true);
    assert.equal(a.state, "reconnecting");

    // While disconnected nothing is queued: requests and events fail at once with UNAVAILABLE.
    await assert.rejects(a.request("rb", "echo@v1/echo", [2], { timeoutMs: Infinity }), { code: "UNAVAILABLE" });
    assert.throws(() => a.event("rb", "echo@v1/note"), { code: "UNAVAILABLE" });

    await twoAttempts; // the first attempt found nothing listening
    const reopened = [nextEvent(a, "open"), nextEvent(b, "open")];
    await start("--port", port);
    assert.deepEqual(await reopened[0], { reconnected: true });
    await reopened[1];
    assert.equal(a.state, "open");
    assert.equal(a.clientId, "ra");
    assert.equal(a.form, form);
    assert.deepEqual((await a.request("rb", "echo@v1/echo", [3])).data, [3], "both logged in again under their ids");

    const names = events.map((e) => e.name);
    assert.equal(names[0], "close");
    assert.equal(names.at(-1), "open");
    const attempts = events.filter((e) => e.name === "reconnecting");
    assert.deepEqual(attempts.map((e) => e.attempt), attempts.map((_, k) => k + 1));
    for (const { attempt, delayMs } of attempts) {
      const full = Math.min(BACKOFF.maxDelayMs, BACKOFF.initialDelayMs * BACKOFF.factor ** (attempt - 1));
      assert.ok(delayMs >= full * (1 - BACKOFF.jitter) - 1 && delayMs <= full, `attempt ${attempt}: ${delayMs} ms`);
    }
  });
}

test("the same token logs in again after a restart; a token at the upgrade binds without login", async () => {
  const tokens = tokenFile(["tok-tina tina", "tok-tom tom"]);
  const first = await start("--auth", `tokens:${tokens}`);
  const port = String(first.port);
  const tina = await client(connect(first.url, { reconnect: BACKOFF }));
  assert.equal(await tina.login({ token: "tok-tina" }), "tina");
  const tom = await client(connect(first.url, { form: "compact", token: "tok-tom", clientId: "tom", reconnect: BACKOFF }));
  tom.onRequest("echo@v1/echo", (params, ctx) => ({ params, from: ctx.from }));
  assert.deepEqual((await tina.request("tom", "echo@v1/echo", [1])).data, { params: [1], from: "tina" });

  const closed = nextEvent(tina, "close");
  await first.stop();
  await closed;
  const reopened = [nextEvent(tina, "open"), nextEvent(tom, "open")];
  await start("--port", port, "--auth", `tokens:${tokens}`);
  await Promise.all(reopened);
  assert.deepEqual((await tina.request("tom", "echo@v1/echo", [2])).data, { params: [2], from: "tina" });
  await assert.rejects(connect(first.url, { token: "wrong" }), /could not connect/, "a refused token is a refused upgrade");
});

test("a re-login the restarted gateway refuses ends the client, with an error event", async () => {
  const first = await start("--auth", `tokens:${tokenFile(["tok-una una"])}`);
  const port = String(first.port);
  const una = await client(connect(first.url, { reconnect: BACKOFF }));
  await una.login({ token: "tok-una" });
  const closed = nextEvent(una, "close");
  await first.stop();
  await closed;
  const refused = nextEvent(una, "error");
  await start("--port", port, "--auth", `tokens:${tokenFile(["tok-other una"])}`);
  const { error } = await refused;
  assert.equal(error.code, "PERMISSION_DENIED");
  const outcome = await una.closed;
  assert.equal(una.state, "closed");
  assert.equal(typeof outcome.code, "number");
});

test("reconnection gives up after maxAttempts: a last close, and closed resolves", async () => {
  const gateway = await start();
  const c = await client(loggedIn(gateway.url, "quitter", { reconnect: { ...BACKOFF, maxAttempts: 2 } }));
  const events = record(c);
  await gateway.stop();
  const outcome = await c.closed;
  assert.equal(outcome.wasClean, false);
  assert.deepEqual(events.map((e) => e.name), ["close", "reconnecting", "reconnecting", "close"]);
  assert.equal(events[0].willReconnect, true);
  assert.equal(events.at(-1).willReconnect, false);
  await assert.rejects(c.request("server", "wsa@v1/ping"), { code: "GONE" });
});

test("close() while waiting to reconnect stops for good", async () => {
  const gateway = await start();
  const c = await client(loggedIn(gateway.url, "stopper", { reconnect: { ...BACKOFF, initialDelayMs: 60_000 } }));
  const waiting = nextEvent(c, "reconnecting");
  await gateway.stop();
  await waiting;
  await c.close();
  assert.equal(c.state, "closed");
  await assert.rejects(c.request("server", "wsa@v1/ping"), { code: "GONE" });
});

for (const form of FORMS) {
  test(`${form}: replaced by a newer login of the same id (4001): events, pending GONE, no reconnection`, async () => {
    const gateway = await start();
    const old = await client(loggedIn(gateway.url, "twin", { form, reconnect: BACKOFF }));
    const peer = await client(loggedIn(gateway.url, "peer"));
    peer.onRequest("hold@v1/hold", () => new Promise(() => {}));
    const events = record(old);
    const pending = assert.rejects(old.request("peer", "hold@v1/hold", {}, { timeoutMs: Infinity }),
      (e) => e.code === "GONE" && e.closeCode === 4001);
    await peer.ping();
    const newer = await client(loggedIn(gateway.url, "twin", { form }));
    const outcome = await old.closed;
    await pending;
    assert.equal(outcome.code, 4001);
    assert.deepEqual(events.map((e) => e.name), ["replaced", "close"]);
    assert.equal(events[1].code, 4001);
    assert.equal(events[1].wasClean, true);
    assert.equal(events[1].willReconnect, false);
    assert.equal(old.state, "closed");
    await newer.ping();
    newer.onRequest("echo@v1/echo", (params) => params);
    assert.deepEqual((await peer.request("twin", "echo@v1/echo", [7])).data, [7], "the newer connection is twin now");
  });
}
