// A WSA gateway written by hand on Node's `ws` package: the bench's Node peer.
// Same scope as websockets_gateway.py: ping, dev login, relay (requests, responses,
// events; verbose and compact) and broadcast to every other logged-in client.
// Run: node bench/peers/node_ws_gateway.js --port 8766
'use strict';

const { WebSocketServer } = require('ws');

const CLIENT_ID = /^[A-Za-z0-9._:@-]{1,64}$/;
const RESERVED = new Set(['server', 'client', 's', 'c']);
const TYPE_SHORT = { request: 'q', response: 'r', event: 'e' };
const TYPE_LONG = { q: 'request', r: 'response', e: 'event' };
const PEER_SHORT = { server: 's', client: 'c' };
const PEER_LONG = { s: 'server', c: 'client' };

function expand(m) {
  const type = TYPE_LONG[m.y];
  const p = m.p !== undefined ? m.p : (m.P || {});
  let payload;
  if (type === 'response') {
    payload = { result: p.r === 's' ? 'success' : 'fail' };
    if ('c' in p) payload[p.r === 's' ? 'receipt' : 'code'] = p.c;
  } else {
    payload = { method: p.m };
    if ('p' in p) payload.params = p.p;
  }
  if ('d' in p) payload.data = p.d;
  return { from: PEER_LONG[m.f] || m.f, to: PEER_LONG[m.t] || m.t, type, id: m.i, payload };
}

function shrink(m) {
  const pl = m.payload;
  let p;
  if (m.type === 'response') {
    p = { r: pl.result === 'success' ? 's' : 'f' };
    if ('receipt' in pl) p.c = pl.receipt;
    else if ('code' in pl) p.c = pl.code;
  } else {
    p = { m: pl.method };
    if ('params' in pl) p.p = pl.params;
  }
  if ('data' in pl) p.d = pl.data;
  return { f: PEER_SHORT[m.from] || m.from, t: PEER_SHORT[m.to] || m.to, y: TYPE_SHORT[m.type], i: m.id, p };
}

const clients = new Map(); // client id -> ws

function encodeFor(ws, m) {
  return JSON.stringify(ws.wsaCompact ? shrink(m) : m);
}

function respond(ws, req, ok, value) {
  const payload = ok ? { result: 'success' } : { result: 'fail', code: value };
  if (ok && value !== undefined) payload.receipt = value;
  const to = ws.wsaId !== null ? ws.wsaId : (req.from || '');
  ws.send(encodeFor(ws, { from: 'server', to, type: 'response', id: req.id, payload }));
}

function toServer(ws, m) {
  const method = m.payload.method;
  if (m.type !== 'request') {
    if (m.type === 'event') respond(ws, m, false, 'METHOD_NOT_FOUND');
    return;
  }
  if (method === 'wsa@v1/ping') {
    respond(ws, m, true);
  } else if (method === 'auth@v1/login') {
    const cid = m.from;
    if (ws.wsaId !== null) return respond(ws, m, false, 'ALREADY_AUTHENTICATED');
    if (typeof cid !== 'string' || !CLIENT_ID.test(cid) || RESERVED.has(cid)) {
      return respond(ws, m, false, 'PERMISSION_DENIED');
    }
    const old = clients.get(cid);
    clients.set(cid, ws);
    ws.wsaId = cid;
    if (old !== undefined) {
      old.wsaId = null;
      old.close(4001, 'replaced');
    }
    respond(ws, m, true, cid);
  } else if (ws.wsaId === null) {
    respond(ws, m, false, 'UNAUTHENTICATED');
  } else {
    respond(ws, m, false, 'METHOD_NOT_FOUND');
  }
}

function onMessage(ws, data, isBinary) {
  let m;
  let arrivedCompact;
  try {
    m = JSON.parse(data);
    arrivedCompact = 'y' in m;
    if (arrivedCompact) m = expand(m);
    if (typeof m.payload !== 'object' || m.payload === null || m.id === undefined) throw new Error('shape');
  } catch (e) {
    const err = { code: 'INVALID_MESSAGE', reason: 'not a WSA message' };
    ws.send(encodeFor(ws, { from: 'server', to: ws.wsaId || '', type: 'event', id: 'error',
      payload: { method: 'wsa@v1/error', params: err } }));
    return;
  }
  const to = m.to;
  if (to === 'server') return toServer(ws, m);
  if (ws.wsaId === null) return respond(ws, m, false, 'UNAUTHENTICATED');
  if (m.from !== ws.wsaId) return respond(ws, m, false, 'PERMISSION_DENIED');
  if (to === 'client') {
    if (m.type !== 'event') return respond(ws, m, false, 'INVALID_TARGET');
    let verbose = null;
    let compact = null;
    for (const c of clients.values()) {
      if (c === ws || c.readyState !== c.OPEN) continue;
      if (c.wsaCompact) {
        if (compact === null) compact = JSON.stringify(shrink(m));
        c.send(compact);
      } else {
        if (verbose === null) verbose = JSON.stringify(m);
        c.send(verbose);
      }
    }
    return;
  }
  const target = clients.get(to);
  if (target === undefined || target.readyState !== target.OPEN) {
    if (m.type !== 'response') respond(ws, m, false, 'NOT_FOUND');
    return;
  }
  // Same form: forward the text as received; otherwise re-encode for the target.
  if (target.wsaCompact === arrivedCompact) target.send(data, { binary: isBinary });
  else target.send(encodeFor(target, m));
}

function main() {
  const args = process.argv.slice(2);
  let port = 8766;
  let host = '127.0.0.1';
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port') port = parseInt(args[++i], 10);
    else if (args[i] === '--host') host = args[++i];
  }
  const wss = new WebSocketServer({
    host,
    port,
    perMessageDeflate: false,
    handleProtocols: (protocols) => {
      for (const p of protocols) if (p === 'wsa.v1' || p === 'wsa.v1.compact') return p;
      return false;
    },
  });
  wss.on('connection', (ws, req) => {
    let compact;
    if (ws.protocol) compact = ws.protocol === 'wsa.v1.compact';
    else compact = new URL(req.url, 'http://x').searchParams.get('format') === 'compact';
    ws.wsaCompact = compact;
    ws.wsaId = null;
    ws.on('message', (data, isBinary) => onMessage(ws, data, isBinary));
    ws.on('close', () => {
      if (ws.wsaId !== null && clients.get(ws.wsaId) === ws) clients.delete(ws.wsaId);
    });
    ws.on('error', () => {});
  });
  wss.on('listening', () => console.log(`node ws gateway on ${host}:${port}`));
  process.on('SIGTERM', () => process.exit(0));
}

main();
