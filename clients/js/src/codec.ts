/**
 * The two forms of a WSA message (docs/protocol.md section 2): `encode` writes a Message in
 * either form, `decode` reads either form (telling them apart by their keys) into a Message.
 * Keys are written in the order the gateway writes them, with no spaces.
 */
import type { Form, Message, Params } from "./types.js";

/** A message the client cannot read; it is counted and dropped. */
export class DecodeError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "DecodeError";
  }
}

const COMPACT_TYPE = { request: "q", response: "r", event: "e" } as const;
const VERBOSE_TYPE: Record<string, Message["type"]> = { q: "request", r: "response", e: "event" };

function compactParty(party: string): string {
  return party === "server" ? "s" : party === "client" ? "c" : party;
}

function verboseParty(party: string): string {
  return party === "s" ? "server" : party === "c" ? "client" : party;
}

/**
 * The JSON text of `msg` in `form`. Throws TypeError for params or data that are not JSON.
 * Written by concatenation: ids, methods, codes and client ids obey grammars with nothing to
 * escape (checked before sending), so only receipts, params and data go through JSON.stringify.
 */
export function encode(msg: Message, form: Form): string {
  const compact = form === "compact";
  const head = compact
    ? `{"f":"${compactParty(msg.from)}","t":"${compactParty(msg.to)}","y":"${COMPACT_TYPE[msg.type]}","i":"${msg.id}","p":{`
    : `{"from":"${msg.from}","to":"${msg.to}","type":"${msg.type}","id":"${msg.id}","payload":{`;
  let body: string;
  if (msg.type !== "response") {
    body = (compact ? `"m":"` : `"method":"`) + msg.method + '"';
    if (msg.params !== undefined) body += (compact ? `,"p":` : `,"params":`) + stringify(msg.params);
  } else {
    if (msg.result === "success") {
      body = compact ? `"r":"s"` : `"result":"success"`;
      if (msg.receipt !== undefined) body += (compact ? `,"c":` : `,"receipt":`) + JSON.stringify(msg.receipt);
    } else {
      body = (compact ? `"r":"f","c":"` : `"result":"fail","code":"`) + msg.code + '"';
    }
    if (msg.data !== undefined) body += (compact ? `,"d":` : `,"data":`) + stringify(msg.data);
  }
  return head + body + "}}";
}

function stringify(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError("not a JSON value");
  return text;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function field(obj: Record<string, unknown>, key: string): string {
  const value = obj[key];
  if (typeof value !== "string") throw new DecodeError(`"${key}" is not a string`);
  return value;
}

function params(value: unknown): Params | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null) throw new DecodeError("params is not an object or an array");
  return value as Params;
}

/** Read one message of either form from its JSON text. Throws DecodeError. */
export function decode(text: string): Message {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    throw new DecodeError("not JSON");
  }
  if (!isObject(obj)) throw new DecodeError("not a JSON object");
  const compact = "y" in obj;
  const type = compact ? VERBOSE_TYPE[obj.y as string] : obj.type;
  const from = compact ? verboseParty(field(obj, "f")) : field(obj, "from");
  const to = compact ? verboseParty(field(obj, "t")) : field(obj, "to");
  const id = field(obj, compact ? "i" : "id");
  const payload = compact ? (obj.p ?? obj.P) : obj.payload;
  if (!isObject(payload)) throw new DecodeError("payload is not an object");
  if (type === "request" || type === "event") {
    const method = field(payload, compact ? "m" : "method");
    const p = params(payload[compact ? "p" : "params"]);
    return p === undefined ? { type, from, to, id, method } : { type, from, to, id, method, params: p };
  }
  if (type !== "response") throw new DecodeError(`unknown type ${JSON.stringify(compact ? obj.y : obj.type)}`);
  const result = compact ? payload.r : payload.result;
  const data = payload[compact ? "d" : "data"];
  if (result === "s" && compact || result === "success" && !compact) {
    const receipt = payload[compact ? "c" : "receipt"];
    if (receipt !== undefined && receipt !== null && typeof receipt !== "string") {
      throw new DecodeError("receipt is not a string");
    }
    const msg: Message = { type, from, to, id, result: "success" };
    if (receipt !== undefined) msg.receipt = receipt as string | null;
    if (data !== undefined) msg.data = data;
    return msg;
  }
  if (result === "f" && compact || result === "fail" && !compact) {
    const msg: Message = { type, from, to, id, result: "fail", code: field(payload, compact ? "c" : "code") };
    if (data !== undefined) msg.data = data;
    return msg;
  }
  throw new DecodeError("unknown result");
}
