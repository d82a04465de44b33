// Every flow of the API against a real gateway, in both forms, and across the two forms.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { WsaError } from "../dist/index.js";
import { connect, FORMS, Gateway, loggedIn, nextEvent } from "./support.js";

let gateway;
before(async () => {
  gateway = await Gateway.start();
});
after(async () => {
  await gateway?.stop();
});

/** Clients that each test closes at its end. */
function clients() {
  const open = [];
  return {
    async add(promise) {
      const client = await promise;
      open.push(client);
      return client;
    },
    async closeAll() {
      await Promise.all(open.map((c) => c.close()));
    },
  };
}

for (const [formA, formB] of [["verbose", "verbose"], ["compact", "compact"], ["compact", "verbose"], ["verbose", "compact"]]) {
  describe(`${formA} client with a ${formB} peer`, () => {
    const tag = `${formA[0]}${formB[0]}`;
    let a, b, c, opened;
    before(async () => {
      opened = clients();
      a = await opened.add(loggedIn(gateway.url, `alice-${tag}`, { form: formA }));
      b = await opened.add(loggedIn(gateway.url, `bob-${tag}`, { form: formB }));
      c = await opened.add(loggedIn(gateway.url, `carol-${tag}`, { form: formB }));
    });
    after(async () => opened.closeAll());

    test("the connection is in the form asked for, as the server echoed it", () => {
      assert.equal(a.form, formA);
      assert.equal(b.form, formB);
      assert.equal(a.state, "open");
      assert.equal(a.clientId, `alice-${tag}`);
    });

    test("a request relayed to a peer: params in, data out, sender known", async () => {
      b.onRequest("quiz@v1/ask", (params, ctx) => ({ answer: params.q + 1, asker: ctx.from, id: ctx.id }));
      const r = await a.request(b.clientId, "quiz@v1/ask", { q: 1 });
      assert.equal(r.result, "success");
      assert.deepEqual(r.data, { answer: 2, asker: a.clientId, id: r.id });
      assert.equal(r.from, b.clientId);
      assert.equal(r.receipt, undefined);
    });

    test("an async handler; a string answer is a receipt; nothing is a bare success; arrays pass", async () => {
      b.onRequest("quiz@v1/later", async (params) => {
        await new Promise((resolve) => setImmediate(resolve));
        return params;
      });
      b.onRequest("quiz@v1/receipt", () => "stored-7");
      b.onRequest("quiz@v1/nothing", () => undefined);
      assert.deepEqual((await a.request(b.clientId, "quiz@v1/later", [1, "two", { three: 3 }])).data, [1, "two", { three: 3 }]);
      const receipt = await a.request(b.clientId, "quiz@v1/receipt");
      assert.equal(receipt.receipt, "stored-7");
      assert.equal(receipt.data, undefined);
      const bare = await a.request(b.clientId, "quiz@v1/nothing");
      assert.ok(!("receipt" in bare) && !("data" in bare));
    });

    test("the other way round: the peer asks, this client answers", async () => {
      a.onRequest("quiz@v1/back", (params, ctx) => ({ got: params, from: ctx.from }));
      const r = await b.request(a.clientId, "quiz@v1/back", { n: 3 });
      assert.deepEqual(r.data, { got: { n: 3 }, from: b.clientId });
    });

    test("a handler's WsaError is a fail with its code; any other throw is INTERNAL_ERROR", async () => {
      b.onRequest("quiz@v1/refuse", () => {
        throw new WsaError("NOT_TODAY");
      });
      b.onRequest("quiz@v1/broken", async () => {
        throw new Error("a bug in the handler");
      });
      await assert.rejects(a.request(b.clientId, "quiz@v1/refuse"),
        (e) => e instanceof WsaError && e.code === "NOT_TODAY" && e.response.from === b.clientId);
      const reported = nextEvent(b, "error");
      await assert.rejects(a.request(b.clientId, "quiz@v1/broken"), { code: "INTERNAL_ERROR" });
      assert.equal((await reported).error.message, "a bug in the handler");
      assert.equal((await reported).message.method, "quiz@v1/broken");
      b.onRequest("quiz@v1/not-json", () => ({ count: 1n }));
      const notJson = nextEvent(b, "error");
      await assert.rejects(a.request(b.clientId, "quiz@v1/not-json"), { code: "INTERNAL_ERROR" });
      assert.ok((await notJson).error instanceof TypeError);
    });

    test("no handler for the method: METHOD_NOT_FOUND, from the peer and from the server", async () => {
      await assert.rejects(a.request(b.clientId, "quiz@v1/unknown"), { code: "METHOD_NOT_FOUND" });
      await assert.rejects(a.request("server", "nothing@v1/here"), { code: "METHOD_NOT_FOUND" });
    });

    test("a peer that is not connected: NOT_FOUND from the server", async () => {
      await assert.rejects(a.request("nobody-here", "quiz@v1/ask"),
        (e) => e.code === "NOT_FOUND" && e.response.from === "server");
    });

    test("ping the server", async () => {
      await a.ping();
      const r = await a.request("server", "wsa@v1/ping");
      assert.equal(r.result, "success");
      assert.equal(r.from, "server");
    });

    test("an event to a peer", async () => {
      const got = new Promise((resolve) => b.onEvent("chat@v1/typing", (params, ctx) => resolve({ params, ctx })));
      a.event(b.clientId, "chat@v1/typing", { now: true });
      const { params, ctx } = await got;
      assert.deepEqual(params, { now: true });
      assert.equal(ctx.from, a.clientId);
      assert.equal(ctx.message.to, b.clientId);
    });

    test("a broadcast reaches every other client, not the sender", async () => {
      const heard = [];
      let selfHeard = 0;
      a.onEvent("chat@v1/shout", () => selfHeard++);
      const both = Promise.all([b, c].map((peer) => new Promise((resolve) => peer.onEvent("chat@v1/shout", (params, ctx) => {
        heard.push({ who: peer.clientId, params, from: ctx.from, to: ctx.message.to });
        resolve();
      }))));
      a.broadcast("chat@v1/shout", { text: "hi all" });
      await both;
      await a.ping(); // the gateway writes a broadcast to everyone before it reads the sender's next message
      assert.equal(selfHeard, 0);
      assert.deepEqual(heard.map((h) => h.to), ["client", "client"]);
      assert.ok(heard.every((h) => h.from === a.clientId && h.params.text === "hi all"));
    });

    test("many requests in flight at once are each answered once, in any order", async () => {
      b.onRequest("quiz@v1/echo", (params) => params);
      const replies = await Promise.all(Array.from({ length: 500 }, (_, k) => a.request(b.clientId, "quiz@v1/echo", [k])));
      assert.deepEqual(replies.map((r) => r.data[0]), Array.from({ length: 500 }, (_, k) => k));
      assert.equal(new Set(replies.map((r) => r.id)).size, 500);
      assert.equal(a.stats.droppedResponses, 0);
    });
  });
}

describe("session rules", () => {
  test("before login: ping works, anything else is UNAUTHENTICATED", async () => {
    const anon = await connect(gateway.url, { form: "compact" });
    try {
      await anon.ping();
      await assert.rejects(anon.request("server", "quiz@v1/ask"), { code: "UNAUTHENTICATED" });
      assert.equal(anon.clientId, undefined);
    } finally {
      await anon.close();
    }
  });

  test("login resolves to the bound id; a second login is ALREADY_AUTHENTICATED", async () => {
    const client = await connect(gateway.url);
    try {
      assert.equal(await client.login("dora"), "dora");
      await assert.rejects(client.login("dora"), { code: "ALREADY_AUTHENTICATED" });
      assert.equal(client.clientId, "dora");
    } finally {
      await client.close();
    }
  });

  test("the form can be asked for with ?format= instead of a subprotocol", async () => {
    const client = await connect(gateway.url, { form: "compact", negotiate: "query" });
    try {
      assert.equal(client.form, "compact");
      assert.equal(await client.login("erin"), "erin");
      await client.ping();
    } finally {
      await client.close();
    }
  });

  test("short ids are accepted by the gateway", async () => {
    const a = await loggedIn(gateway.url, "short-a", { idStyle: "short" });
    const b = await loggedIn(gateway.url, "short-b", { form: "compact", idStyle: "short" });
    try {
      b.onRequest("quiz@v1/echo", (params) => params);
      const r = await a.request("short-b", "quiz@v1/echo", { x: 1 });
      assert.match(r.id, /^[a-z0-9]{5}$/);
      assert.deepEqual(r.data, { x: 1 });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test("bad arguments are refused before anything is sent", async () => {
    const client = await loggedIn(gateway.url, "frank");
    try {
      await assert.rejects(client.request("bob", "no-version"), TypeError);
      await assert.rejects(client.request("server", "quiz@v1/ask", 3), TypeError);
      await assert.rejects(client.request("not an id", "quiz@v1/ask"), TypeError);
      assert.throws(() => client.event("client", "chat@v1/shout"), TypeError);
      assert.throws(() => client.onRequest("bad", () => {}), TypeError);
      await assert.rejects(connect(gateway.url, { form: "tiny" }), TypeError);
      await client.ping();
    } finally {
      await client.close();
    }
  });

  for (const form of FORMS) {
    test(`${form}: what the gateway cannot read comes back as a wsa@v1/error event`, async () => {
      const client = await loggedIn(gateway.url, `grace-${form}`, { form });
      try {
        const got = new Promise((resolve) => client.onEvent("wsa@v1/error", (params, ctx) => resolve({ params, ctx })));
        // Not through the API (which only sends valid messages): the raw socket, as a buggy peer would.
        client["socket"].send("{not json");
        const { params, ctx } = await got;
        assert.equal(params.code, "INVALID_MESSAGE");
        assert.equal(ctx.from, "server");
      } finally {
        await client.close();
      }
    });
  }
});
