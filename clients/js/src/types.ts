/**
 * WSA messages as they travel, in both forms (docs/protocol.md sections 2-3), and the one
 * shape this client hands out whatever the form.
 */

/** The params of a request or event: a JSON object or array. */
export type Params = Record<string, unknown> | unknown[];

/** Any JSON value (the `data` extension of a response). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type MessageType = "request" | "response" | "event";
export type Result = "success" | "fail";
export type Form = "verbose" | "compact";

// ---- verbose form: long keys and values ----

export interface VerboseRequest {
  from: string;
  to: string;
  type: "request";
  id: string;
  payload: { method: string; params?: Params };
}

export interface VerboseEvent {
  from: string;
  to: string;
  type: "event";
  id: string;
  payload: { method: string; params?: Params };
}

export interface VerboseSuccess {
  from: string;
  to: string;
  type: "response";
  id: string;
  payload: { result: "success"; receipt?: string | null; data?: unknown };
}

export interface VerboseFail {
  from: string;
  to: string;
  type: "response";
  id: string;
  payload: { result: "fail"; code: string; data?: unknown };
}

export type VerboseResponse = VerboseSuccess | VerboseFail;
export type VerboseMessage = VerboseRequest | VerboseEvent | VerboseResponse;

// ---- compact form: one-letter keys; "server" is "s", "client" is "c" in from/to ----

export interface CompactRequest {
  f: string;
  t: string;
  y: "q";
  i: string;
  p: { m: string; p?: Params };
}

export interface CompactEvent {
  f: string;
  t: string;
  y: "e";
  i: string;
  p: { m: string; p?: Params };
}

export interface CompactSuccess {
  f: string;
  t: string;
  y: "r";
  i: string;
  /** `c` is the receipt. */
  p: { r: "s"; c?: string | null; d?: unknown };
}

export interface CompactFail {
  f: string;
  t: string;
  y: "r";
  i: string;
  /** `c` is the code. */
  p: { r: "f"; c: string; d?: unknown };
}

export type CompactResponse = CompactSuccess | CompactFail;
export type CompactMessage = CompactRequest | CompactEvent | CompactResponse;

/** A message on the wire, in either form. */
export type WireMessage = VerboseMessage | CompactMessage;

// ---- what the client hands out: verbose terms, whatever the form ----

interface Envelope {
  /** `"server"` or a client id (`""` from an anonymous sender). */
  from: string;
  /** `"server"`, `"client"` (a broadcast) or a client id. */
  to: string;
  id: string;
}

export interface RequestMessage extends Envelope {
  type: "request";
  method: string;
  params?: Params;
}

export interface EventMessage extends Envelope {
  type: "event";
  method: string;
  params?: Params;
}

export interface SuccessMessage extends Envelope {
  type: "response";
  result: "success";
  /** Present when the response carried one (`null` included). */
  receipt?: string | null;
  /** Present when the response carried one (`null` included). */
  data?: unknown;
}

export interface FailMessage extends Envelope {
  type: "response";
  result: "fail";
  code: string;
  data?: unknown;
}

export type ResponseMessage = SuccessMessage | FailMessage;
export type Message = RequestMessage | EventMessage | ResponseMessage;
