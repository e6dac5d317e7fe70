/**
 * Reports a network store's connection state changes (ioredis: connect, ready, close, reconnecting,
 * end, error) to one callback, for the logs. ioredis emits `error` on every failed reconnect attempt,
 * so repeats of one state or one error message are reported once, not once per retry.
 */
export type ConnectionState = "connect" | "ready" | "close" | "reconnecting" | "end" | "error";

/** Called on each state change; `detail` carries the error message or the reconnect delay. */
export type ConnectionStateListener = (state: ConnectionState, detail?: { error?: string; delayMs?: number }) => void;

interface Emitter {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

export function watchConnection(client: Emitter, listener: ConnectionStateListener): void {
  let last: ConnectionState | undefined;
  let lastError: string | undefined;
  const report = (state: ConnectionState, detail?: { error?: string; delayMs?: number }) => {
    if (state === "error") {
      if (detail?.error === lastError) return;
      lastError = detail?.error;
      listener(state, detail);
      return;
    }
    if (state === last) return;
    last = state;
    if (state === "ready") lastError = undefined;
    listener(state, detail);
  };
  for (const state of ["connect", "ready", "close", "end"] as const) client.on(state, () => report(state));
  client.on("reconnecting", (delay) => report("reconnecting", { delayMs: typeof delay === "number" ? delay : undefined }));
  client.on("error", (error) => report("error", { error: error instanceof Error ? error.message : String(error) }));
}
