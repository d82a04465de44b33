/** A small typed event emitter (the same in browsers and Node, unlike EventTarget's details). */
export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<(detail: never) => void>>();

  /** Call `listener` on every `name` event; returns a function that removes it. */
  on<K extends keyof Events>(name: K, listener: (detail: Events[K]) => void): () => void {
    let set = this.listeners.get(name);
    if (set === undefined) this.listeners.set(name, (set = new Set()));
    set.add(listener as (detail: never) => void);
    return () => this.off(name, listener);
  }

  off<K extends keyof Events>(name: K, listener: (detail: Events[K]) => void): void {
    this.listeners.get(name)?.delete(listener as (detail: never) => void);
  }

  /** Call every listener of `name`; a listener that throws is reported by `onListenerError`. */
  protected emit<K extends keyof Events>(name: K, detail: Events[K]): void {
    const set = this.listeners.get(name);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        (listener as (detail: Events[K]) => void)(detail);
      } catch (error) {
        this.onListenerError(error);
      }
    }
  }

  protected onListenerError(error: unknown): void {
    queueMicrotask(() => {
      throw error;
    });
  }
}
