// Two browser windows chat through a WSA gateway with wsa-fast-client: a message to everyone is
// a broadcast event; a message to one person is a request, and its answer shows it was read.
import { WsaClient } from "../../clients/js/dist/index.js";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
$("gateway").value = query.get("gateway") ?? `ws://${location.hostname || "127.0.0.1"}:8765`;
$("name").value = query.get("name") ?? "";
$("form").value = query.get("form") ?? "verbose";

let client;

/** One line of the log; its data attributes say what it was (the browser test reads them). */
function log(kind, { from = "", to = "", text = "" }) {
  const item = document.createElement("li");
  Object.assign(item.dataset, { kind, from, to, text });
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = kind === "system" ? "" : `${from} → ${to || "everyone"}`;
  item.append(who, text);
  $("log").append(item);
  return item;
}

/** What became of a message we sent: "sent", "delivered" or "failed". */
function mark(item, text, outcome) {
  const span = document.createElement("span");
  span.className = `mark ${outcome}`;
  span.textContent = text;
  item.append(span);
  item.dataset.outcome = outcome;
}

function status(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

$("join-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  client = new WsaClient($("gateway").value, { form: $("form").value, reconnect: true });
  client.on("close", ({ code, willReconnect }) =>
    status(willReconnect ? "reconnecting" : "closed", `Disconnected (${code})${willReconnect ? ", reconnecting…" : "."}`));
  client.on("open", ({ reconnected }) => reconnected && status("open", `Back as ${client.clientId} (${client.form}).`));
  client.on("replaced", () => log("system", { text: `${name} joined in another window; this one stopped.` }));
  client.onEvent("chat@v1/said", (params, ctx) => log("broadcast-in", { from: ctx.from, text: params.text }));
  client.onRequest("chat@v1/message", (params, ctx) => {
    log("direct-in", { from: ctx.from, to: client.clientId, text: params.text });
    return { readBy: client.clientId, at: new Date().toISOString() };
  });
  try {
    status("connecting", "Connecting…");
    await client.connect();
    await client.login(name);
  } catch (error) {
    status("closed", `Could not join: ${error.code ?? error.message}`);
    client.close();
    return;
  }
  status("open", `Joined as ${client.clientId} (${client.form}).`);
  $("join-form").hidden = true;
  $("send-form").hidden = false;
  $("text").focus();
});

$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const to = $("to").value.trim();
  const text = $("text").value;
  $("text").value = "";
  if (!to) {
    const item = log("broadcast-out", { from: client.clientId, text });
    try {
      client.broadcast("chat@v1/said", { text });
      mark(item, "sent", "sent");
    } catch (error) {
      mark(item, `✗ ${error.code}`, "failed");
    }
    return;
  }
  const item = log("direct-out", { from: client.clientId, to, text });
  try {
    const reply = await client.request(to, "chat@v1/message", { text }, { timeoutMs: 10_000 });
    mark(item, `✓ read by ${reply.data.readBy}`, "delivered");
  } catch (error) {
    mark(item, `✗ ${error.code ?? error.message}`, "failed");
  }
});
