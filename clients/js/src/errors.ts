import { isCode } from "./grammar.js";
import type { FailMessage } from "./types.js";

/** Codes of docs/protocol.md section 6; handlers may use their own of the same shape. */
export type WsaCode =
  | "UNAUTHENTICATED" | "PERMISSION_DENIED" | "INVALID_MESSAGE" | "INVALID_TARGET"
  | "METHOD_NOT_FOUND" | "NOT_FOUND" | "TIMEOUT" | "GONE" | "DUPLICATE_ID" | "RATE_LIMITED"
  | "ALREADY_AUTHENTICATED" | "CONFLICT" | "UNAVAILABLE" | "INTERNAL_ERROR";

/**
 * A WSA failure. Thrown by a request that got `fail` (`response` is that message), that timed
 * out here (`TIMEOUT`), that was cut off by the connection closing (`GONE`, with `closeCode`),
 * or that was made while disconnected (`UNAVAILABLE`). Throw one from a request handler to
 * answer `fail` with its code.
 */
export class WsaError extends Error {
  readonly code: WsaCode | (string & {});
  /** The fail response, when the error came from one. */
  readonly response?: FailMessage;
  /** The WebSocket close code, for `GONE` caused by the connection closing. */
  readonly closeCode?: number;

  constructor(code: WsaCode | (string & {}), message?: string,
              extra: { response?: FailMessage; closeCode?: number } = {}) {
    if (!isCode(code)) throw new TypeError(`invalid WSA code ${JSON.stringify(code)}: expected [A-Z][A-Z0-9_]{0,63}`);
    super(message ?? code);
    this.name = "WsaError";
    this.code = code;
    if (extra.response !== undefined) this.response = extra.response;
    if (extra.closeCode !== undefined) this.closeCode = extra.closeCode;
  }
}
