// Failures a caller must be able to tell apart: the server's TIMEOUT and GONE, a local
// TIMEOUT, the connection closing under pending requests, and calls on a closed client.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { WsaError } from "../dist/index.js";
import { FORMS, Gateway, loggedIn } from "./support.js";

let gateway;
before(async () => {
  gateway = await Gateway.start("--request-timeout", "0.5");
});
after(async () => {
  await gateway?.stop();
});

/** A promise and the function that resolves it. */
function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

for (const form of FORMS) {
  describe(`${form}`, () => {
    test("a peer that never answers: TIMEOUT from the gateway (request_timeout 0.5 s)", async () => {
      const a = await loggedIn(gateway.url, `ta-${form}`, { form });
      const b = await loggedIn(gateway.url, `tb-${form}`, { form });
      try {
        b.onRequest("slow@v1/never", () => new Promise(() => {}));
        await assert.rejects(a.request(b.clientId, "slow@v1/never", {}, { timeoutMs: 60_000 }),
          (e) => e instanceof WsaError && e.code === "TIMEOUT" && e.response.from === "server");
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    test("a local timeout: TIMEOUT here, and the answer that comes later is dropped and counted", async () => {
      const a = await loggedIn(gateway.url, `la-${form}`, { form });
      const b = await loggedIn(gateway.url, `lb-${form}`, { form });
      try {
        const release = deferred();
        b.onRequest("slow@v1/later", async () => {
          await release.promise;
          return { late: true };
        });
        await assert.rejects(a.request(b.clientId, "slow@v1/later", {}, { timeoutMs: 50 }),
          (e) => e.code === "TIMEOUT" && e.response === undefined);
        // The late answer, then an event on the same connection: once the event is here, so was the answer.
        const marker = new Promise((resolve) => a.onEvent("slow@v1/marker", resolve));
        release.resolve();
        await new Promise((resolve) => setImmediate(resolve));
        b.event(a.clientId, "slow@v1/marker");
        await marker;
        assert.equal(a.stats.droppedResponses, 1);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    test("the peer leaves before answering: GONE from the gateway", async () => {
      const a = await loggedIn(gateway.url, `ga-${form}`, { form });
      const b = await loggedIn(gateway.url, `gb-${form}`, { form });
      try {
        const asked = deferred();
        b.onRequest("slow@v1/asked", () => {
          asked.resolve();
          return new Promise(() => {});
        });
        const outcome = assert.rejects(a.request(b.clientId, "slow@v1/asked", {}, { timeoutMs: 60_000 }),
          (e) => e.code === "GONE" && e.response.from === "server");
        await asked.promise;
        await b.close();
        await outcome;
      } finally {
        await a.close();
      }
    });

    test("closing rejects every pending request with GONE and the close code; later calls fail GONE at once", async () => {
      const a = await loggedIn(gateway.url, `ca-${form}`, { form });
      const b = await loggedIn(gateway.url, `cb-${form}`, { form });
      try {
        let asked = 0;
        const allAsked = deferred();
        b.onRequest("slow@v1/hold", () => {
          if (++asked === 3) allAsked.resolve();
          return new Promise(() => {});
        });
        const outcomes = [1, 2, 3].map(() => assert.rejects(
          a.request(b.clientId, "slow@v1/hold", {}, { timeoutMs: Infinity }),
          (e) => e.code === "GONE" && e.closeCode === 1000 && e.response === undefined));
        await allAsked.promise;
        const closedEvent = new Promise((resolve) => a.on("close", resolve));
        await a.close(1000, "done");
        await Promise.all(outcomes);
        // The reason is whatever the server's CLOSE carried back (the gateway echoes the code only).
        const closed = await closedEvent;
        assert.deepEqual([closed.code, closed.wasClean, closed.willReconnect], [1000, true, false]);
        assert.deepEqual(await a.closed, { code: 1000, reason: closed.reason, wasClean: true });
        assert.equal(a.state, "closed");
        await assert.rejects(a.request(b.clientId, "slow@v1/hold"), { code: "GONE" });
        assert.throws(() => a.broadcast("chat@v1/shout"), { code: "GONE" });
      } finally {
        await b.close();
      }
    });
  });
}

test("connecting to a port where nothing listens rejects", async () => {
  const probe = await Gateway.start();
  const url = probe.url;
  await probe.stop();
  await assert.rejects(loggedIn(url, "nobody"), /could not connect/);
});
