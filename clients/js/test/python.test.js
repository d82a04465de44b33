// The JS client and the Python client (wsa_fast.client, in its own process) talking through a
// real gateway, each in the other's form: requests both ways, fails, events and broadcasts.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Gateway, loggedIn, PythonPeer } from "./support.js";

let gateway;
before(async () => {
  gateway = await Gateway.start();
});
after(async () => {
  await gateway?.stop();
});

for (const [jsForm, pyForm] of [["verbose", "compact"], ["compact", "verbose"]]) {
  describe(`JS ${jsForm}, Python ${pyForm}`, () => {
    const jsId = `js-${jsForm}`;
    const pyId = `py-${pyForm}`;
    let js, py;
    before(async () => {
      js = await loggedIn(gateway.url, jsId, { form: jsForm });
      py = await PythonPeer.start(gateway.url, pyForm, pyId);
    });
    after(async () => {
      await py?.stop();
      await js?.close();
    });

    test("JS asks Python: params reach it, data comes back", async () => {
      const r = await js.request(pyId, "py@v1/echo", { q: [1, "é", null], deep: { a: { b: true } } });
      assert.deepEqual(r.data, { params: { q: [1, "é", null], deep: { a: { b: true } } }, from: jsId, form: pyForm });
      assert.equal(r.from, pyId);
    });

    test("Python's fail reaches JS with its code", async () => {
      await assert.rejects(js.request(pyId, "py@v1/refuse"), (e) => e.code === "REFUSED" && e.response.from === pyId);
    });

    test("Python asks JS: data, receipt, fail and unknown method", async () => {
      js.onRequest("js@v1/add", (params, ctx) => ({ sum: params.reduce((x, y) => x + y, 0), from: ctx.from }));
      js.onRequest("js@v1/receipt", async () => "kept");
      js.onRequest("js@v1/refuse", () => {
        throw new (class extends Error {})("bug");
      });
      js.on("error", () => {});
      py.send({ do: "request", to: jsId, method: "js@v1/add", params: [1, 2, 3] });
      assert.deepEqual(await py.next(), { data: { sum: 6, from: pyId }, receipt: null });
      py.send({ do: "request", to: jsId, method: "js@v1/receipt" });
      assert.deepEqual(await py.next(), { data: null, receipt: "kept" });
      py.send({ do: "request", to: jsId, method: "js@v1/refuse" });
      assert.deepEqual(await py.next(), { code: "INTERNAL_ERROR" });
      py.send({ do: "request", to: jsId, method: "js@v1/missing" });
      assert.deepEqual(await py.next(), { code: "METHOD_NOT_FOUND" });
    });

    test("events both ways, and a JS broadcast heard by Python", async () => {
      js.event(pyId, "chat@v1/poke", { n: 1 });
      assert.deepEqual(await py.next(), { event: "chat@v1/poke", from: jsId, to: pyId, params: { n: 1 } });
      js.broadcast("chat@v1/shouted", { text: "hello python" });
      assert.deepEqual(await py.next(), { event: "chat@v1/shouted", from: jsId, to: "client", params: { text: "hello python" } });
      const heard = new Promise((resolve) => js.onEvent("chat@v1/shouted", (params, ctx) => resolve({ params, ctx })));
      py.send({ do: "event", to: "client", method: "chat@v1/shouted", params: { text: "hello js" } });
      const { params, ctx } = await heard;
      assert.deepEqual(params, { text: "hello js" });
      assert.equal(ctx.from, pyId);
      assert.equal(ctx.message.to, "client");
    });
  });
}
