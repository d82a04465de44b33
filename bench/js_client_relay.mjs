// Relayed requests per second between two Node processes using wsa-fast-client (clients/js).
//
//   make install js && node bench/js_client_relay.mjs                 # both forms, 400,000 requests each
//   node bench/js_client_relay.mjs --forms compact --requests 1000000 --window 512
//
// The runner starts `wsa-fast serve` (the repo's .venv, or --wsa-fast PATH), a responder
// process (logged in as bench-b, answering bench@v1/echo with its params) and a requester
// process (bench-a, keeping --window requests in flight). Accounting is exact: request k
// carries [k], its answer must carry [k], every k is answered once and only once, the
// responder's count equals the requests sent, and no response arrives that answers nothing.
// Nothing is pinned: the gateway and both Node processes share the machine's cores.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..");
const JS_CLIENT = join(ROOT, "clients/js");
const { WsaClient } = await import(join(JS_CLIENT, "dist/index.js"));
const WebSocket = createRequire(join(JS_CLIENT, "package.json"))("ws");

const { values: opts } = parseArgs({
  options: {
    role: { type: "string", default: "runner" },
    url: { type: "string" },
    form: { type: "string", default: "compact" },
    forms: { type: "string", default: "compact,verbose" },
    requests: { type: "string", default: "400000" },
    warmup: { type: "string", default: "50000" },
    window: { type: "string", default: "256" },
    "wsa-fast": { type: "string", default: process.env.WSA_FAST ?? join(ROOT, ".venv/bin/wsa-fast") },
  },
});

const METHOD = "bench@v1/echo";
const cpuSeconds = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
};
const out = (value) => process.stdout.write(JSON.stringify(value) + "\n");

/** bench-b: answer every request with its params until stdin closes, then report the count. */
async function responder() {
  const client = await WsaClient.connect(opts.url, { WebSocket, form: opts.form });
  await client.login("bench-b");
  let answered = 0;
  client.onRequest(METHOD, (params) => {
    answered++;
    return params;
  });
  out({ ready: true });
  process.stdin.resume().on("end", async () => {
    out({ answered, cpu: cpuSeconds() });
    await client.close();
  });
}

/** bench-a: `count` requests with `window` in flight; every answer checked against its request. */
async function requester() {
  const client = await WsaClient.connect(opts.url, { WebSocket, form: opts.form });
  await client.login("bench-a");
  const window = Number(opts.window);
  const run = (count) => new Promise((done) => {
    const seen = new Uint8Array(count);
    const tally = { ok: 0, wrong: 0, failed: {} };
    let sent = 0;
    let finished = 0;
    const sendNext = () => {
      const k = sent++;
      client.request("bench-b", METHOD, [k], { timeoutMs: 60_000 }).then((reply) => {
        seen[k]++;
        if (reply.data?.[0] === k) tally.ok++;
        else tally.wrong++;
      }, (error) => {
        seen[k]++;
        tally.failed[error.code] = (tally.failed[error.code] ?? 0) + 1;
      }).then(() => {
        if (sent < count) sendNext();
        if (++finished === count) {
          tally.answeredOnce = seen.every((n) => n === 1);
          done(tally);
        }
      });
    };
    for (let i = 0; i < Math.min(window, count); i++) sendNext();
  });
  await run(Number(opts.warmup));
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  const tally = await run(Number(opts.requests));
  const seconds = (performance.now() - t0) / 1000;
  out({ ...tally, seconds, cpu: cpuSeconds() - cpu0, droppedResponses: client.stats.droppedResponses });
  await client.close();
}

// ---- the runner ----

function procCpu(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime in USER_HZ (100 on Linux)
}

function machineBusy() {
  const [, ...ticks] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).map(Number);
  const idle = ticks[3] + ticks[4];
  return { busy: ticks.reduce((a, b) => a + b, 0) - idle, total: ticks.reduce((a, b) => a + b, 0) };
}

function child(args, stdin = "ignore") {
  const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: [stdin, "pipe", "inherit"] });
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  return { proc, next: async () => JSON.parse((await lines.next()).value) };
}

async function startGateway() {
  const proc = spawn(opts["wsa-fast"], ["serve", "--port", "0"], {
    cwd: ROOT, stdio: ["ignore", "pipe", "pipe"],
  });
  proc.on("error", (error) => {
    console.error(`cannot start ${opts["wsa-fast"]}: ${error.message} (make install, or --wsa-fast PATH)`);
    process.exit(2);
  });
  let log = "";
  const port = await new Promise((found, fail) => {
    const read = (chunk) => {
      log += chunk;
      const match = /listening on ws:\/\/[^\s:]+:(\d+)/.exec(log);
      if (match) found(Number(match[1]));
    };
    proc.stdout.setEncoding("utf8").on("data", read);
    proc.stderr.setEncoding("utf8").on("data", read);
    proc.on("exit", () => fail(new Error(`the gateway exited:\n${log}`)));
  });
  return { proc, url: `ws://127.0.0.1:${port}` };
}

async function runner() {
  const rows = [];
  let failures = 0;
  for (const form of opts.forms.split(",")) {
    const gateway = await startGateway();
    const common = ["--url", gateway.url, "--form", form];
    const answerer = child(["--role", "responder", ...common], "pipe");
    await answerer.next();
    const asker = child(["--role", "requester", ...common, "--requests", opts.requests, "--warmup", opts.warmup,
      "--window", opts.window]);
    // The gateway's CPU and the machine's are read around the whole run; the requester times its measured part.
    const gw0 = procCpu(gateway.proc.pid);
    const m0 = machineBusy();
    const result = await asker.next();
    const gwCpu = procCpu(gateway.proc.pid) - gw0;
    const m1 = machineBusy();
    answerer.proc.stdin.end();
    const { answered, cpu: responderCpu } = await answerer.next();
    gateway.proc.kill("SIGTERM");
    const total = Number(opts.requests) + Number(opts.warmup);
    const exact = result.ok === Number(opts.requests) && result.wrong === 0 && Object.keys(result.failed).length === 0
      && result.answeredOnce && answered === total && result.droppedResponses === 0;
    if (!exact) failures++;
    const rate = Number(opts.requests) / result.seconds;
    rows.push({
      form, requests: Number(opts.requests), window: Number(opts.window), rate: Math.round(rate),
      requesterUsPerReq: (1e6 * result.cpu) / Number(opts.requests),
      responderUsPerReq: (1e6 * responderCpu) / total,
      gatewayUsPerReq: (1e6 * gwCpu) / total,
      machineBusy: (m1.busy - m0.busy) / (m1.total - m0.total),
      responderAnswered: answered, exact, ...result,
    });
  }
  console.log("| form | requests | window | relayed req/s | CPU us/req: requester | responder | gateway (4 msgs) | machine busy | exact |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---|");
  for (const r of rows) {
    console.log(`| ${r.form} | ${r.requests.toLocaleString("en")} | ${r.window} | ${r.rate.toLocaleString("en")} | `
      + `${r.requesterUsPerReq.toFixed(1)} | ${r.responderUsPerReq.toFixed(1)} | ${r.gatewayUsPerReq.toFixed(2)} | `
      + `${(100 * r.machineBusy).toFixed(0)}% | `
      + `${r.exact ? "yes" : `NO ${JSON.stringify(r)}`} |`);
  }
  process.exitCode = failures ? 1 : 0;
}

await { runner, responder, requester }[opts.role]();
