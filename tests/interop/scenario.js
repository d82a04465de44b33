// The WSA interop scenario for any client with the browser's WebSocket API: Node's `ws`
// (node_client.js) and Chromium (tests/test_interop.py loads this file into a page).
// It reports what the client saw; tests/test_interop.py checks the report.
(function (root) {
  "use strict";

  // One socket and its inbox: next() is the next message, closed the close event's outcome.
  function connect(WebSocketImpl, url, protocol) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocketImpl(url, protocol ? [protocol] : []);
      const inbox = [];
      const waiters = [];
      ws.inbox = inbox;
      ws.wake = null;
      ws.onmessage = (e) => {
        const message = JSON.parse(e.data);
        if (waiters.length) return waiters.shift()(message);
        inbox.push(message);
        if (ws.wake) ws.wake();
      };
      ws.closed = new Promise((done) => {
        ws.onclose = (e) => done({ code: e.code, reason: e.reason, wasClean: e.wasClean });
      });
      ws.next = () => (inbox.length ? Promise.resolve(inbox.shift()) : new Promise((got) => waiters.push(got)));
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error("cannot connect to " + url));
    });
  }

  let counter = 0;
  function newId() {
    counter += 1;
    return ("0000" + (counter % 46656).toString(36)).slice(-3) + Math.random().toString(36).slice(2, 4).padEnd(2, "0");
  }

  const verbose = {
    request: (from, to, id, method, params) => ({ from, to, type: "request", id, payload: { method, params } }),
    event: (from, to, id, method, params) => ({ from, to, type: "event", id, payload: { method, params } }),
    success: (from, to, id, receipt) => ({ from, to, type: "response", id, payload: { result: "success", receipt } }),
  };
  const compact = {
    request: (from, to, id, method, params) => ({ f: from, t: to === "server" ? "s" : to, y: "q", i: id, p: { m: method, p: params } }),
    event: (from, to, id, method, params) => ({ f: from, t: to === "client" ? "c" : to, y: "e", i: id, p: { m: method, p: params } }),
    success: (from, to, id, receipt) => ({ f: from, t: to, y: "r", i: id, p: { r: "s", c: receipt } }),
  };
  const FORMS = { "wsa.v1": verbose, "wsa.v1.compact": compact };

  function send(ws, message) {
    ws.send(JSON.stringify(message));
  }

  async function login(ws, cid) {
    send(ws, FORMS[ws.protocol].request(cid, "server", newId(), "auth@v1/login"));
    return ws.next();
  }

  async function ping(ws, cid) {
    send(ws, FORMS[ws.protocol].request(cid, "server", newId(), "wsa@v1/ping"));
    return ws.next();
  }

  function isNotFound(m) {
    const p = m.payload || m.p;
    return (m.type === "response" || m.y === "r") && (p.code === "NOT_FOUND" || p.c === "NOT_FOUND");
  }

  // A relayed message: with --workers 2, a login reaches the other worker within milliseconds,
  // and a message sent before that gets NOT_FOUND (docs/protocol.md): send again.
  async function relay(sender, target, build) {
    for (let attempt = 0; attempt < 200; attempt += 1) {
      send(sender, build(newId()));
      for (;;) {
        if (target.inbox.length) return target.inbox.shift();
        if (sender.inbox.length) {
          const answer = sender.inbox.shift();
          if (!isNotFound(answer)) throw new Error("unexpected answer: " + JSON.stringify(answer));
          break;
        }
        await arrival([sender, target]);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error("the target never became reachable");
  }

  // The next message to reach any of the sockets' inboxes.
  function arrival(sockets) {
    return new Promise((woken) => {
      const wake = () => {
        for (const s of sockets) s.wake = null;
        woken();
      };
      for (const s of sockets) s.wake = wake;
    });
  }

  async function closeOutcomes(WebSocketImpl, url, tag, times) {
    const out = { 1000: [], 1005: [], 1008: [], 1009: [], 4001: [] };
    for (let round = 0; round < times; round += 1) {
      let ws = await connect(WebSocketImpl, url, "wsa.v1");
      ws.close(1000);
      out[1000].push(await ws.closed);

      ws = await connect(WebSocketImpl, url, "wsa.v1");
      ws.close();  // no status, as every page's ws.close()
      out[1005].push(await ws.closed);

      ws = await connect(WebSocketImpl, url, "wsa.v1.compact");
      for (let i = 0; i < 20; i += 1) ws.send("not json");
      out[1008].push(await ws.closed);

      ws = await connect(WebSocketImpl, url, "wsa.v1");
      ws.send("x".repeat(1536 * 1024));  // 1.5 MiB, over the default 1 MiB limit
      out[1009].push(await ws.closed);

      const cid = "twice-" + tag + "-" + round;
      const older = await connect(WebSocketImpl, url, "wsa.v1");
      await login(older, cid);
      const newer = await connect(WebSocketImpl, url, "wsa.v1.compact");
      await login(newer, cid);
      out[4001].push(await older.closed);
      newer.close(1000);
      await newer.closed;
    }
    return out;
  }

  async function run(WebSocketImpl, url, times) {
    const tag = Math.random().toString(36).slice(2, 8);
    const a = await connect(WebSocketImpl, url, "wsa.v1");
    const b = await connect(WebSocketImpl, url, "wsa.v1.compact");
    const ida = "a-" + tag;
    const idb = "b-" + tag;
    const report = { ids: [ida, idb], protocols: [a.protocol, b.protocol] };
    report.login = [await login(a, ida), await login(b, idb)];
    report.ping = [await ping(a, ida), await ping(b, idb)];

    // Verbose to compact: a request, and its answer back.
    report.requestAtB = await relay(a, b, (id) => verbose.request(ida, idb, id, "chat@v1/hello", { text: "héllo ✓" }));
    send(b, compact.success(idb, ida, report.requestAtB.i, "got it"));
    report.responseAtA = await a.next();
    // Compact to verbose: an event.
    report.eventAtA = await relay(b, a, (id) => compact.event(idb, ida, id, "chat@v1/note", ["from b"]));
    // A broadcast from a reaches b.
    send(a, verbose.event(ida, "client", newId(), "chat@v1/all", { n: 1 }));
    report.broadcastAtB = await b.next();
    // 512 KiB in one message.
    const big = "0123456789abcdef".repeat(32 * 1024);
    const bigAtB = await relay(a, b, (id) => verbose.event(ida, idb, id, "chat@v1/big", [big]));
    report.big = { sent: big.length, received: bigAtB.p.p[0].length, same: bigAtB.p.p[0] === big };

    a.close(1000);
    b.close(1000);
    report.ownCloses = [await a.closed, await b.closed];
    report.closes = await closeOutcomes(WebSocketImpl, url, tag, times);
    return report;
  }

  // Log in and wait for the server to close (it is being stopped): ready() once logged in.
  async function untilShutdown(WebSocketImpl, url, ready) {
    const ws = await connect(WebSocketImpl, url, "wsa.v1");
    const cid = "stay-" + Math.random().toString(36).slice(2, 8);
    await login(ws, cid);
    await ping(ws, cid);
    ready();
    return ws.closed;
  }

  const api = { run, untilShutdown };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.wsaInterop = api;
})(this);
