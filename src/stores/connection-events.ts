/**
 * Reports a network store's connection state changes (ioredis: connect, ready, close, reconnecting,
 * end, error) to one callback, for the logs. While the store is down ioredis cycles close ->
 * reconnecting -> error on every retry, so after the first loss of connection nothing but a new error
 * message is reported until it is ready again: one outage is a handful of lines, not one per retry.
 */
export type ConnectionState = "connect" | "ready" | "close" | "reconnecting" | "end" | "error" | "silent";

/**
 * Called on each state change; `detail` carries the error message, the reconnect delay, or (for
 * "silent", reported by silence-guard.ts, not by ioredis) how long nothing came back.
 */
export type ConnectionStateListener = (
  state: ConnectionState,
  detail?: { error?: string; delayMs?: number; silentMs?: number },
) => void;

interface Emitter {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

export function watchConnection(client: Emitter, listener: ConnectionStateListener): void {
  let down = false;
  let reportedReconnect = false;
  let lastError: string | undefined;
  const report = (state: ConnectionState, detail?: { error?: string; delayMs?: number }) => {
    switch (state) {
      case "error":
        if (detail?.error === lastError) return;
        lastError = detail?.error;
        break;
      case "ready":
        down = false;
        reportedReconnect = false;
        lastError = undefined;
        break;
      case "close":
        if (down) return;
        down = true;
        break;
      case "reconnecting":
        if (reportedReconnect) return;
        reportedReconnect = true;
        break;
      case "connect":
        // A connect that does not reach ready (e.g. refused AUTH) shows up as the next error.
        if (down) return;
        break;
      case "end":
      case "silent":
        break;
    }
    listener(state, detail);
  };
  for (const state of ["connect", "ready", "close", "end"] as const) client.on(state, () => report(state));
  client.on("reconnecting", (delay) => report("reconnecting", { delayMs: typeof delay === "number" ? delay : undefined }));
  client.on("error", (error) => report("error", { error: error instanceof Error ? error.message : String(error) }));
}
