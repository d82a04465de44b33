/**
 * What the tests run against: real `wsa-fast serve` processes and the Python client, started
 * as a user starts them. The gateway command is `$WSA_FAST`, else the repository's
 * `.venv/bin/wsa-fast` (`make install` creates it); the Python beside it runs python_peer.py.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

import { WsaClient } from "../dist/index.js";

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, "../../..");
export const WSA_FAST = process.env.WSA_FAST ?? join(ROOT, ".venv/bin/wsa-fast");
export const PYTHON = join(dirname(WSA_FAST), "python");
export const FORMS = ["verbose", "compact"];

const LISTENING = /listening on ws:\/\/([^\s:]+):(\d+)/;
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 15_000;

function checkInstalled() {
  if (!existsSync(WSA_FAST)) {
    throw new Error(`no wsa-fast at ${WSA_FAST}: run \`make install\` at the repository root, or set WSA_FAST`);
  }
}

/** A running `wsa-fast serve --port 0 ARGS` (or the `--port` given); `stop()` sends SIGTERM. */
export class Gateway {
  static async start(...args) {
    checkInstalled();
    const argv = args.includes("--port") ? args : ["--port", "0", ...args];
    const gateway = new Gateway(spawn(WSA_FAST, ["serve", ...argv], {
      cwd: ROOT, env: { ...process.env, PYTHONUNBUFFERED: "1" }, stdio: ["ignore", "pipe", "pipe"],
    }));
    await gateway.started;
    return gateway;
  }

  constructor(proc) {
    this.proc = proc;
    this.log = "";
    this.exited = new Promise((done) => proc.once("exit", (code, signal) => done(code ?? signal)));
    this.started = new Promise((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`the gateway did not start:\n${this.log}`)), START_TIMEOUT_MS);
      const read = (chunk) => {
        this.log += chunk;
        const match = !this.port && LISTENING.exec(this.log);
        if (match) {
          this.port = Number(match[2]);
          clearTimeout(timer);
          ready();
        }
      };
      proc.stdout.setEncoding("utf8").on("data", read);
      proc.stderr.setEncoding("utf8").on("data", read);
      this.exited.then(() => {
        clearTimeout(timer);
        fail(new Error(`the gateway exited:\n${this.log}`));
      });
    });
  }

  get url() {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** SIGTERM (the gateway drains, closes its clients with 1001, exits); SIGKILL if it hangs. */
  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
    if (this.log.includes("Traceback (most recent call last)")) throw new Error(`the gateway wrote a traceback:\n${this.log}`);
  }
}

/**
 * Which WebSocket the tests' clients use: `ws` (Node 20's only one), or with
 * WSA_TEST_WEBSOCKET=global none at all, so the client takes Node's own global WebSocket
 * (Node 22+, or Node 20 with --experimental-websocket), as it takes the browser's.
 */
export const WEBSOCKET = process.env.WSA_TEST_WEBSOCKET === "global" ? {} : { WebSocket };

export function connect(url, options = {}) {
  return WsaClient.connect(url, { ...WEBSOCKET, ...options });
}

/** A client that is logged in as `id`. */
export async function loggedIn(url, id, options = {}) {
  const client = await connect(url, options);
  await client.login(id);
  return client;
}

/** The next time `emitter` emits `name`, its detail. */
export function nextEvent(client, name) {
  return new Promise((resolve) => {
    const off = client.on(name, (detail) => {
      off();
      resolve(detail);
    });
  });
}

/**
 * The Python client (wsa_fast.client) in another process, driven by JSON lines: `send(command)`
 * writes one to its stdin, `next()` reads the next line it printed (see python_peer.py).
 */
export class PythonPeer {
  static async start(url, form, id) {
    checkInstalled();
    const peer = new PythonPeer(spawn(PYTHON, [join(HERE, "python_peer.py"), url, form, id], {
      cwd: ROOT, stdio: ["pipe", "pipe", "inherit"],
    }));
    const ready = await peer.next();
    if (ready.ready !== id) throw new Error(`the Python peer did not log in: ${JSON.stringify(ready)}`);
    return peer;
  }

  constructor(proc) {
    this.proc = proc;
    this.lines = [];
    this.waiters = [];
    this.exited = new Promise((done) => proc.once("exit", done));
    createInterface({ input: proc.stdout }).on("line", (line) => {
      const value = JSON.parse(line);
      const waiter = this.waiters.shift();
      if (waiter) waiter(value);
      else this.lines.push(value);
    });
  }

  next() {
    if (this.lines.length) return Promise.resolve(this.lines.shift());
    return new Promise((resolve, reject) => {
      this.waiters.push(resolve);
      this.exited.then(() => reject(new Error("the Python peer exited")));
    });
  }

  send(command) {
    this.proc.stdin.write(JSON.stringify(command) + "\n");
  }

  async stop() {
    this.send({ do: "quit" });
    await this.exited;
  }
}
