/** wsa-fast-client: a WSA client for browsers and Node. */
export { WsaClient, PROTOCOLS, CLOSE_REPLACED } from "./client.js";
export type {
  ClientEvents, ClientState, ConnectOptions, EventHandler, HandlerContext, LoginCredentials, ReconnectOptions,
  RequestHandler, RequestOptions, WebSocketConstructor, WebSocketLike,
} from "./client.js";
export { WsaError } from "./errors.js";
export type { WsaCode } from "./errors.js";
export { encode, decode, DecodeError } from "./codec.js";
export { idFactory } from "./ids.js";
export type { IdStyle } from "./ids.js";
export { isClientId, isMethod, isCode } from "./grammar.js";
export type * from "./types.js";
