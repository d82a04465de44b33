/**
 * Node's `ws` writes every message with its own system call. Corking its TCP socket until the
 * current burst of synchronous work and microtasks ends sends the burst in one writev instead,
 * which is most of what a busy Node client spends.
 *
 * `_socket` (the net.Socket) is a private field of `ws`'s WebSocket: where it is missing
 * (browsers, Node's built-in WebSocket, a `ws` that renamed it) messages are written one by one,
 * exactly as before. Nothing else here depends on it.
 */

interface Corkable {
  cork(): void;
  uncork(): void;
}

const corked = new WeakSet<Corkable>();

/** Hold the writes of `socket` until the microtask queue drains (no-op where it cannot). */
export function batchWrites(socket: object): void {
  const raw = (socket as { _socket?: Partial<Corkable> | null })._socket;
  if (raw == null || typeof raw.cork !== "function" || typeof raw.uncork !== "function") return;
  const stream = raw as Corkable;
  if (corked.has(stream)) return;
  stream.cork();
  corked.add(stream);
  queueMicrotask(() => {
    corked.delete(stream);
    stream.uncork();
  });
}
