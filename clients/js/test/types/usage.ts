// Compiled (not run) by `npm test`: the public types accept what users pass and say what they get.
import WebSocket from "ws";

import { WsaClient, WsaError, type CompactMessage, type Message, type SuccessMessage, type VerboseMessage } from "../../dist/index.js";

export async function withWs(): Promise<void> {
  const c = await WsaClient.connect("ws://127.0.0.1:8765", { form: "compact", WebSocket, reconnect: { maxAttempts: 3 } });
  const bound: string = await c.login({ token: "t" });
  const r: SuccessMessage = await c.request(bound, "quiz@v1/ask", { q: 1 }, { timeoutMs: 5000 });
  const data: unknown = r.data;
  const receipt: string | null | undefined = r.receipt;
  c.onRequest("quiz@v1/ask", async (params, ctx) => ({ answer: 2, params, from: ctx.from }));
  c.onEvent("chat@v1/shouted", (params, ctx) => void [params, ctx.message.to]);
  const off = c.on("close", ({ code, wasClean, willReconnect }) => void [code, wasClean, willReconnect]);
  off();
  c.on("reconnecting", ({ attempt, delayMs }) => void [attempt, delayMs]);
  c.on("replaced", ({ reason }) => void reason);
  c.event("bob", "chat@v1/typing", {});
  c.broadcast("chat@v1/shout", { text: "hi" });
  try {
    await c.ping();
  } catch (error) {
    if (error instanceof WsaError) void [error.code, error.response?.code, error.closeCode];
  }
  void [data, receipt];
  await c.close();
}

export function withTheDomWebSocket(dom: typeof globalThis.WebSocket): WsaClient {
  return new WsaClient("ws://127.0.0.1:8765", { WebSocket: dom });
}

export function wire(m: Message, v: VerboseMessage, c: CompactMessage): string {
  const kind = v.type === "response" ? v.payload.result : v.payload.method;
  const short = c.y === "r" ? c.p.r : c.p.m;
  if (m.type === "response" && m.result === "fail") return m.code + kind + short;
  return kind + short;
}
