/**
 * One WSA connection from a browser or Node: requests, events, broadcasts, handlers for what
 * the server and other clients send, and (opt-in) reconnection. The same shape as the Python
 * client (wsa_fast/client.py), written for JS:
 *
 *     const c = await WsaClient.connect("ws://127.0.0.1:8765", { form: "compact" });
 *     await c.login("alice");
 *     const r = await c.request("bob", "quiz@v1/ask", { q: 1 });   // r.data, r.receipt
 */
import { decode, encode } from "./codec.js";
import { Emitter } from "./emitter.js";
import { WsaError } from "./errors.js";
import { isClientId, isMethod } from "./grammar.js";
import { idFactory, type IdStyle } from "./ids.js";
import { batchWrites } from "./write_batching.js";
import type {
  EventMessage, FailMessage, Form, Message, Params, RequestMessage, ResponseMessage, SuccessMessage,
} from "./types.js";

/** `Sec-WebSocket-Protocol` of each form (docs/protocol.md section 1). */
export const PROTOCOLS: Readonly<Record<Form, string>> = { verbose: "wsa.v1", compact: "wsa.v1.compact" };
const FORM_OF_PROTOCOL: Record<string, Form> = { "wsa.v1": "verbose", "wsa.v1.compact": "compact" };

const PING = "wsa@v1/ping";
const LOGIN = "auth@v1/login";
/** The close code the gateway uses for a connection replaced by a newer login of the same id. */
export const CLOSE_REPLACED = 4001;
const OPEN = 1; // WebSocket.OPEN

/**
 * The part of the WebSocket API this client uses: the browser's, Node 22's global, or `ws`'s.
 * The handlers' events are `any` so that each implementation's own event types fit; the client
 * reads `data` from a message event and `code`, `reason`, `wasClean` from a close event.
 */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  binaryType: string;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

interface MessageEventLike {
  data: unknown;
}

interface CloseEventLike {
  code: number;
  reason: string;
  wasClean: boolean;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ReconnectOptions {
  /** Delay before the first attempt (default 250 ms); each later one multiplies it by `factor`. */
  initialDelayMs?: number;
  /** The longest delay (default 10 s). */
  maxDelayMs?: number;
  /** Growth of the delay per attempt (default 2). */
  factor?: number;
  /** Share of each delay drawn at random, 0-1 (default 0.5: a delay d waits between d/2 and d). */
  jitter?: number;
  /** Attempts before giving up (default: never give up). */
  maxAttempts?: number;
}

export interface ConnectOptions {
  /** The form the server writes to this connection (default "verbose"). */
  form?: Form;
  /** How the form is asked for: `Sec-WebSocket-Protocol` (default) or `?format=`. */
  negotiate?: "subprotocol" | "query";
  /** The WebSocket class: default `globalThis.WebSocket` (browsers, Node 22+); pass `ws`'s in Node 20. */
  WebSocket?: WebSocketConstructor;
  /** A token presented at the upgrade as `?token=` (browsers cannot set an Authorization header). */
  token?: string;
  /** The id a token at the upgrade binds (the server does not say it): needed to send anything but ping. */
  clientId?: string;
  /** A request's timeout when its call gives none (default 30 s; `Infinity` waits for ever). */
  requestTimeoutMs?: number;
  /** How long opening a connection may take (default 10 s). */
  connectTimeoutMs?: number;
  /** Message id style (default "iso8601"). */
  idStyle?: IdStyle;
  /** Reconnect after the connection drops (default off); `true` takes the default backoff. */
  reconnect?: boolean | ReconnectOptions;
}

export interface RequestOptions {
  /** Reject with `TIMEOUT` when no response arrives within this (default: the client's `requestTimeoutMs`). */
  timeoutMs?: number;
}

export interface LoginCredentials {
  /** The id asked for; omitted or "" takes the id the credentials name. */
  id?: string;
  /** Sent as params `{ token }`. */
  token?: string;
  /** Params sent as they are (instead of `{ token }`). */
  params?: Params;
}

/** What a handler learns about the message it handles. */
export interface HandlerContext<M extends RequestMessage | EventMessage> {
  /** The sender: a client id, or "server". */
  from: string;
  id: string;
  method: string;
  message: M;
  client: WsaClient;
}

/**
 * Answers a request. Return `undefined`/`null` (success), a string (success with that receipt)
 * or any other JSON value (success with it as `data`), or throw `WsaError(code)` (fail with that
 * code; any other exception answers `INTERNAL_ERROR`). May be async.
 */
export type RequestHandler = (params: Params | undefined, ctx: HandlerContext<RequestMessage>) => unknown;
export type EventHandler = (params: Params | undefined, ctx: HandlerContext<EventMessage>) => unknown;

export interface ClientEvents {
  /** A connection is open (and, after a reconnection, logged in again). */
  open: { reconnected: boolean };
  /** A connection closed; `willReconnect` tells whether the client tries again. */
  close: { code: number; reason: string; wasClean: boolean; willReconnect: boolean };
  /** The next reconnection attempt starts after `delayMs`. */
  reconnecting: { attempt: number; delayMs: number };
  /** The same id logged in on a newer connection: this one was closed with 4001 (no reconnection). */
  replaced: { reason: string };
  /** A handler threw, a message could not be read, or a re-login was refused. */
  error: { error: unknown; message?: Message };
}

export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

interface Pending {
  resolve: (response: SuccessMessage) => void;
  reject: (error: WsaError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

const DEFAULT_RECONNECT: Required<ReconnectOptions> = {
  initialDelayMs: 250, maxDelayMs: 10_000, factor: 2, jitter: 0.5, maxAttempts: Infinity,
};

export class WsaClient extends Emitter<ClientEvents> {
  readonly url: string;
  /** The form the server writes to this connection (what it echoed, else verbose). */
  form: Form;
  /** The bound id, used as `from` of everything sent; undefined until login. */
  clientId: string | undefined;
  state: ClientState = "idle";
  /** Counters: responses that answered nothing pending here, unreadable messages, unhandled events. */
  readonly stats = { droppedResponses: 0, badMessages: 0, unhandledEvents: 0, handlerErrors: 0 };
  /** Resolves when the client is closed for good: by `close()`, a replacement, or reconnection giving up. */
  readonly closed: Promise<{ code: number; reason: string; wasClean: boolean }>;

  private readonly options: ConnectOptions;
  private readonly WebSocketClass: WebSocketConstructor;
  private readonly requestTimeoutMs: number;
  private readonly reconnectOptions: Required<ReconnectOptions> | undefined;
  private readonly newId: () => string;
  private socket: WebSocketLike | undefined;
  private readonly pending = new Map<string, Pending>();
  private readonly requestHandlers = new Map<string, RequestHandler>();
  private readonly eventHandlers = new Map<string, EventHandler>();
  private credentials: { id: string; params: Params | undefined } | undefined;
  private closing = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private wakeReconnect: (() => void) | undefined;
  private markClosed!: (outcome: { code: number; reason: string; wasClean: boolean }) => void;

  /** A client that is not connected yet: add listeners, then `await client.connect()`. */
  constructor(url: string, options: ConnectOptions = {}) {
    super();
    const form = options.form ?? "verbose";
    if (form !== "verbose" && form !== "compact") throw new TypeError(`form must be "verbose" or "compact", not ${JSON.stringify(form)}`);
    if (options.clientId !== undefined && !isClientId(options.clientId)) {
      throw new TypeError(`${JSON.stringify(options.clientId)} is not a client id`);
    }
    const WebSocketClass = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WebSocketClass === undefined) {
      throw new TypeError("no global WebSocket here (Node before 22): pass { WebSocket } from the ws package");
    }
    this.options = options;
    this.WebSocketClass = WebSocketClass;
    this.form = "verbose";
    this.url = withQuery(url, options, form);
    this.clientId = options.clientId;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.newId = idFactory(options.idStyle ?? "iso8601");
    this.reconnectOptions = options.reconnect
      ? { ...DEFAULT_RECONNECT, ...(options.reconnect === true ? {} : options.reconnect) }
      : undefined;
    this.closed = new Promise((resolve) => {
      this.markClosed = resolve;
    });
  }

  /** Open a connection; resolves once it is open, rejects if it cannot be opened. */
  static async connect(url: string, options: ConnectOptions = {}): Promise<WsaClient> {
    const client = new WsaClient(url, options);
    await client.connect();
    return client;
  }

  /** Open the connection (once). */
  async connect(): Promise<void> {
    if (this.state !== "idle") throw new Error(`connect() on a client that is ${this.state}`);
    this.state = "connecting";
    try {
      await this.openSocket();
    } catch (error) {
      this.finish({ code: 1006, reason: "", wasClean: false }, false);
      throw error;
    }
    this.state = "open";
    this.emit("open", { reconnected: false });
  }

  // ---- sending ----

  /**
   * Send a request to `to` ("server" or a client id) and resolve to its success response
   * (`{ result, receipt, data, ... }`). Rejects with WsaError: the response's code for fail,
   * `TIMEOUT` when nothing arrives in time, `GONE` when the connection closes first,
   * `UNAVAILABLE` at once while disconnected (nothing is queued).
   */
  request(to: string, method: string, params?: Params, options: RequestOptions = {}): Promise<SuccessMessage> {
    try {
      checkOutgoing(to, method, params);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.send(this.clientId ?? "", to, method, params, options.timeoutMs ?? this.requestTimeoutMs, false);
  }

  /** `wsa@v1/ping` the server (allowed before login). */
  async ping(options: RequestOptions = {}): Promise<void> {
    await this.request("server", PING, undefined, options);
  }

  /**
   * `auth@v1/login`: as `id` (dev auth), or with credentials; resolves to the bound id. With
   * reconnection on, the same login is made again on every new connection.
   */
  async login(credentials: string | LoginCredentials = {}, options: RequestOptions = {}): Promise<string> {
    const asked = typeof credentials === "string" ? { id: credentials } : credentials;
    const id = asked.id ?? "";
    if (id !== "" && !isClientId(id)) throw new TypeError(`${JSON.stringify(id)} is not a client id`);
    const params = asked.params ?? (asked.token !== undefined ? { token: asked.token } : undefined);
    const bound = await this.loginAs(id, params, options.timeoutMs ?? this.requestTimeoutMs, false);
    this.credentials = { id, params };
    return bound;
  }

  /** Send an event to `to` ("server" or a client id). Throws WsaError UNAVAILABLE/GONE when not connected. */
  event(to: string, method: string, params?: Params): void {
    checkOutgoing(to, method, params);
    if (to === "client") throw new TypeError('to broadcast, call broadcast(method, params)');
    this.write(this.eventMessage(to, method, params), false);
  }

  /** Send an event to every other logged-in client. */
  broadcast(method: string, params?: Params): void {
    checkOutgoing("client", method, params);
    this.write(this.eventMessage("client", method, params), false);
  }

  /** Close for good (no reconnection); pending requests reject with GONE. Resolves once closed. */
  async close(code = 1000, reason = ""): Promise<void> {
    this.closing = true;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.wakeReconnect?.();
    const socket = this.socket;
    if (socket !== undefined && this.state !== "closed") socket.close(code, reason);
    else if (this.state !== "closed") this.finish({ code, reason, wasClean: true }, this.state === "reconnecting");
    await this.closed;
  }

  // ---- receiving ----

  /** Answer requests for `method` (one handler per method; a later one replaces it). Returns a remover. */
  onRequest(method: string, handler: RequestHandler): () => void {
    return register(this.requestHandlers, method, handler);
  }

  /** Handle events for `method`, `wsa@v1/error` from the server included. Returns a remover. */
  onEvent(method: string, handler: EventHandler): () => void {
    return register(this.eventHandlers, method, handler);
  }

  // ---- the connection ----

  private openSocket(): Promise<void> {
    return new Promise((resolve, reject) => {
      const form = this.options.form ?? "verbose";
      const subprotocol = (this.options.negotiate ?? "subprotocol") === "subprotocol";
      let socket: WebSocketLike;
      try {
        socket = subprotocol ? new this.WebSocketClass(this.url, PROTOCOLS[form]) : new this.WebSocketClass(this.url);
      } catch (error) {
        reject(error);
        return;
      }
      socket.binaryType = "arraybuffer";
      this.socket = socket;
      let opened = false;
      let failed = false;
      // Not opened: give up on this socket and ignore whatever it reports later. Some
      // WebSockets (Node 20's experimental one) report a refused connection by an error only.
      const fail = (why: string) => {
        if (opened || failed) return;
        failed = true;
        clearTimeout(timer);
        if (this.socket === socket) this.socket = undefined;
        socket.close();
        reject(new Error(`could not connect to ${this.url} (${why})`));
      };
      const timer = setTimeout(() => fail("timed out"), this.options.connectTimeoutMs ?? 10_000);
      socket.onopen = () => {
        if (failed) return;
        const echoed = socket.protocol;
        if (echoed && FORM_OF_PROTOCOL[echoed] === undefined) {
          fail(`the server chose an unknown subprotocol ${JSON.stringify(echoed)}`);
          return;
        }
        clearTimeout(timer);
        opened = true;
        this.form = subprotocol ? (FORM_OF_PROTOCOL[echoed] ?? "verbose") : form;
        resolve();
      };
      socket.onmessage = (event: MessageEventLike) => this.receive(socket, event.data);
      socket.onerror = () => fail("network error or refused upgrade");
      socket.onclose = (event: CloseEventLike) => {
        if (opened) this.socketClosed(socket, event.code, event.reason, event.wasClean);
        else fail(`close code ${event.code}`);
      };
    });
  }

  private socketClosed(socket: WebSocketLike, code: number, reason: string, wasClean: boolean): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    const gone = new WsaError("GONE", `the connection closed (${code}${reason ? ` ${reason}` : ""})`, { closeCode: code });
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.reject(gone);
    }
    if (this.state !== "open") return; // opening or re-opening: the caller sees the failure
    const replaced = code === CLOSE_REPLACED;
    const willReconnect = this.reconnectOptions !== undefined && !this.closing && !replaced;
    if (replaced) this.emit("replaced", { reason });
    this.emit("close", { code, reason, wasClean, willReconnect });
    if (willReconnect) void this.reconnect();
    else this.finish({ code, reason, wasClean }, false);
  }

  /** Reopen with backoff and jitter, log in again with the same credentials, then `open`. */
  private async reconnect(): Promise<void> {
    const options = this.reconnectOptions!;
    this.state = "reconnecting";
    let lastCode = 1006;
    for (let attempt = 1; attempt <= options.maxAttempts; attempt++) {
      const full = Math.min(options.maxDelayMs, options.initialDelayMs * options.factor ** (attempt - 1));
      const delayMs = Math.round(full * (1 - options.jitter * Math.random()));
      this.emit("reconnecting", { attempt, delayMs });
      await new Promise<void>((wake) => {
        this.wakeReconnect = wake;
        this.reconnectTimer = setTimeout(wake, delayMs);
      });
      this.reconnectTimer = this.wakeReconnect = undefined;
      if (this.closing) break;
      try {
        await this.openSocket();
        if (this.credentials !== undefined) {
          await this.loginAs(this.credentials.id, this.credentials.params, this.requestTimeoutMs, true);
        }
      } catch (error) {
        if (error instanceof WsaError && error.response !== undefined) {
          // The server refused the same credentials: trying again would be refused again.
          this.emit("error", { error });
          this.socket?.close(1000, "login refused");
          this.socket = undefined;
          break;
        }
        if (error instanceof WsaError && error.closeCode !== undefined) lastCode = error.closeCode;
        if (this.closing) break;
        continue;
      }
      if (this.closing) break;
      this.state = "open";
      this.emit("open", { reconnected: true });
      return;
    }
    this.finish({ code: lastCode, reason: "", wasClean: false }, true);
  }

  /** Closed for good; `announce` emits the last `close` (after reconnection stopped). */
  private finish(outcome: { code: number; reason: string; wasClean: boolean }, announce: boolean): void {
    if (this.state === "closed") return;
    this.state = "closed";
    if (announce) this.emit("close", { ...outcome, willReconnect: false });
    this.markClosed(outcome);
  }

  private async loginAs(id: string, params: Params | undefined, timeoutMs: number, internal: boolean): Promise<string> {
    const response = await this.send(id, "server", LOGIN, params, timeoutMs, internal);
    const bound = response.receipt;
    if (typeof bound !== "string" || !isClientId(bound)) {
      throw new WsaError("INVALID_MESSAGE", "login succeeded without a client id receipt");
    }
    this.clientId = bound;
    return bound;
  }

  private send(from: string, to: string, method: string, params: Params | undefined,
               timeoutMs: number, internal: boolean): Promise<SuccessMessage> {
    let id = this.newId();
    while (this.pending.has(id)) id = this.newId(); // only after 36**5 short ids in a row
    const msg: RequestMessage = params === undefined
      ? { type: "request", from, to, id, method }
      : { type: "request", from, to, id, method, params };
    try {
      this.write(msg, internal);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      const timer = timeoutMs === Infinity ? undefined : setTimeout(() => {
        if (this.pending.get(id)?.timer === timer) {
          this.pending.delete(id);
          reject(new WsaError("TIMEOUT", `no response to ${method} (${id}) within ${timeoutMs} ms`));
        }
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  private eventMessage(to: string, method: string, params: Params | undefined): EventMessage {
    const from = this.clientId ?? "";
    const id = this.newId();
    return params === undefined ? { type: "event", from, to, id, method } : { type: "event", from, to, id, method, params };
  }

  /** Write one message; `internal` writes while reconnecting (the re-login). */
  private write(msg: Message, internal: boolean): void {
    const socket = this.socket;
    if (this.state === "closed" || this.state === "idle") throw new WsaError("GONE", "the client is closed");
    if (socket === undefined || socket.readyState !== OPEN || (this.state !== "open" && !internal)) {
      throw new WsaError("UNAVAILABLE", "not connected (reconnecting)");
    }
    batchWrites(socket);
    socket.send(encode(msg, this.form));
  }

  private receive(socket: WebSocketLike, data: unknown): void {
    let msg: Message;
    try {
      msg = decode(typeof data === "string" ? data : textOf(data));
    } catch (error) {
      this.stats.badMessages++;
      this.emit("error", { error });
      return;
    }
    if (msg.type === "response") this.onResponse(msg);
    else if (msg.type === "request") this.onRequestMessage(socket, msg);
    else this.onEventMessage(msg);
  }

  private onResponse(msg: ResponseMessage): void {
    const pending = this.pending.get(msg.id);
    if (pending === undefined) {
      this.stats.droppedResponses++;
      return;
    }
    this.pending.delete(msg.id);
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    if (msg.result === "success") pending.resolve(msg);
    else pending.reject(new WsaError(msg.code, `${msg.from} answered fail ${msg.code}`, { response: msg as FailMessage }));
  }

  private onRequestMessage(socket: WebSocketLike, msg: RequestMessage): void {
    const handler = this.requestHandlers.get(msg.method);
    if (handler === undefined) {
      this.reply(socket, msg, new WsaError("METHOD_NOT_FOUND"));
      return;
    }
    let outcome: unknown;
    try {
      outcome = handler(msg.params, this.context(msg));
    } catch (error) {
      this.reply(socket, msg, error, true);
      return;
    }
    if (isThenable(outcome)) {
      outcome.then((value) => this.reply(socket, msg, value), (error) => this.reply(socket, msg, error, true));
    } else {
      this.reply(socket, msg, outcome);
    }
  }

  /** Answer `request` with a handler's outcome, on the connection it came from. */
  private reply(socket: WebSocketLike, request: RequestMessage, outcome: unknown, thrown = false): void {
    if (socket !== this.socket || socket.readyState !== OPEN) return; // that connection is gone: nobody to answer
    const from = this.clientId ?? "";
    const { from: to, id } = request;
    let response: ResponseMessage;
    if (outcome instanceof WsaError) {
      response = { type: "response", from, to, id, result: "fail", code: outcome.code };
    } else if (thrown) {
      this.handlerFailed(outcome, request);
      response = { type: "response", from, to, id, result: "fail", code: "INTERNAL_ERROR" };
    } else if (outcome === undefined || outcome === null) {
      response = { type: "response", from, to, id, result: "success" };
    } else if (typeof outcome === "string") {
      response = { type: "response", from, to, id, result: "success", receipt: outcome };
    } else {
      response = { type: "response", from, to, id, result: "success", data: outcome };
    }
    let text: string;
    try {
      text = encode(response, this.form);
    } catch (error) {
      this.handlerFailed(error, request);
      text = encode({ type: "response", from, to, id, result: "fail", code: "INTERNAL_ERROR" }, this.form);
    }
    batchWrites(socket);
    socket.send(text);
  }

  private onEventMessage(msg: EventMessage): void {
    const handler = this.eventHandlers.get(msg.method);
    if (handler === undefined) {
      this.stats.unhandledEvents++;
      return;
    }
    try {
      const outcome = handler(msg.params, this.context(msg));
      if (isThenable(outcome)) outcome.then(undefined, (error) => this.handlerFailed(error, msg));
    } catch (error) {
      this.handlerFailed(error, msg);
    }
  }

  private context<M extends RequestMessage | EventMessage>(msg: M): HandlerContext<M> {
    return { from: msg.from, id: msg.id, method: msg.method, message: msg, client: this };
  }

  private handlerFailed(error: unknown, message: Message): void {
    this.stats.handlerErrors++;
    this.emit("error", { error, message });
  }
}

function register<H>(table: Map<string, H>, method: string, handler: H): () => void {
  if (!isMethod(method)) throw new TypeError(`${JSON.stringify(method)} is not a method name of the form service@vN/endpoint`);
  table.set(method, handler);
  return () => {
    if (table.get(method) === handler) table.delete(method);
  };
}

function checkOutgoing(to: string, method: string, params: Params | undefined): void {
  if (!isMethod(method)) throw new TypeError(`${JSON.stringify(method)} is not a method name of the form service@vN/endpoint`);
  if (params !== undefined && (typeof params !== "object" || params === null)) {
    throw new TypeError("params must be an object, an array or undefined");
  }
  if (to !== "server" && to !== "client" && !isClientId(to)) {
    throw new TypeError(`to must be "server", "client" or a client id, not ${JSON.stringify(to)}`);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}

const utf8 = new TextDecoder();

function textOf(data: unknown): string {
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return utf8.decode(data as ArrayBuffer);
  throw new TypeError("a message that is neither text nor bytes");
}

function withQuery(url: string, options: ConnectOptions, form: Form): string {
  const parsed = new URL(url);
  if (options.negotiate === "query") parsed.searchParams.set("format", form);
  if (options.token !== undefined) parsed.searchParams.set("token", options.token);
  return parsed.toString();
}
