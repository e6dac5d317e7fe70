/**
 * Watches a network store's connection (ioredis: connect, ready, close, reconnecting, end, error):
 * reports state changes to one callback, for the logs, and keeps the last cause of failure, so a
 * command that fails for want of a connection, and /readyz, can say why (store-errors.ts).
 *
 * While the store is down ioredis cycles close -> reconnecting -> error on every retry, so after the
 * first loss of connection nothing but a new cause is reported until it is ready again: one outage is
 * a handful of lines, not one per retry.
 */
import { StoreUnavailableError, TurnoError } from "../domain/errors.ts";
import { type ProbeTarget, probeConnection } from "./connection-probe.ts";
import { classifyStoreError, type StoreCauseKind } from "./store-errors.ts";

export type ConnectionState = "connect" | "ready" | "close" | "reconnecting" | "end" | "error" | "silent" | "replicas";

/**
 * Called on each state change; `detail` carries the cause in the service's words (`error`, with its
 * `cause` kind when known), the reconnect delay, for "silent" (reported by silence-guard.ts, not
 * by ioredis) how long nothing came back, and for "replicas" (replica-ack.ts LiveReplicaCount) how
 * many replicas each WAIT now waits for and why the others do not count.
 */
export type ConnectionStateListener = (
  state: ConnectionState,
  detail?: {
    error?: string;
    cause?: StoreCauseKind;
    delayMs?: number;
    silentMs?: number;
    replicas?: number;
    counted?: string;
    left?: string;
  },
) => void;

interface Emitter {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  /** ioredis's connection status ("ready" when commands run). */
  readonly status: string;
}

/** What a store asks of its connection watch. */
export interface ConnectionWatch {
  /** Why the connection is down, when it is not ready and a cause was seen; else undefined. */
  downCause(): string | undefined;
  /** The error a failed command should surface: the named cause, or `error` itself when unknown. */
  translate(error: unknown): unknown;
  /** Resolves true once the connection is ready, false after `timeoutMs` (default: never) without it. */
  whenReady(timeoutMs?: number): Promise<boolean>;
}

/**
 * `probe`: where to connect by itself when the client reports only that it could not connect
 * (connection-probe.ts); Sentinel and Cluster stores give their first sentinel or node.
 */
export function watchConnection(
  client: Emitter,
  listener: ConnectionStateListener = () => {},
  probe?: ProbeTarget,
): ConnectionWatch {
  let down = false;
  let reportedReconnect = false;
  let lastError: string | undefined;
  const waiting = new Set<() => void>();
  let probing = false;
  /** Connects once to `probe` and reports what stops it, unless the client got ready meanwhile. */
  const diagnose = () => {
    if (probe === undefined || probing) return;
    probing = true;
    void probeConnection(probe, 2000).then((cause) => {
      probing = false;
      if (cause !== undefined && client.status !== "ready") report("error", { error: cause.message, cause: cause.kind });
    });
  };
  const report = (state: ConnectionState, detail?: { error?: string; cause?: StoreCauseKind; delayMs?: number }) => {
    switch (state) {
      case "error":
        if (detail?.error === lastError) return;
        lastError = detail?.error;
        break;
      case "ready":
        down = false;
        reportedReconnect = false;
        lastError = undefined;
        for (const wake of waiting) wake();
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
  // A Cluster client reports each node's failures as "node error", a Sentinel client its sentinels'
  // as "sentinelError"; their "error" then only says that all of them failed.
  for (const event of ["error", "node error", "sentinelError"]) {
    client.on(event, (error) => {
      const cause = classifyStoreError(error);
      if (cause !== undefined && cause.kind !== "not-connected") {
        report("error", { error: cause.message, cause: cause.kind });
        return;
      }
      // "All sentinels are unreachable", "Failed to refresh slots cache": the known cause says more.
      if (lastError !== undefined) return;
      report("error", { error: error instanceof Error ? error.message : String(error) });
      if (cause?.kind === "not-connected" || cause === undefined) diagnose();
    });
  }

  const downCause = () => (client.status === "ready" ? undefined : lastError);
  return {
    downCause,
    translate(error) {
      if (error instanceof TurnoError) return error;
      const cause = classifyStoreError(error);
      if (cause === undefined) return error;
      // A command that timed out in the offline queue of a client that is not connected: the
      // connection's cause is the real one.
      const queued = cause.kind === "timeout" && client.status !== "ready" && lastError !== undefined;
      if (cause.kind !== "not-connected" && !queued) return new StoreUnavailableError(cause.message);
      const why = lastError ?? (client.status === "ready" ? "the connection to Redis was lost" : "not connected to Redis yet");
      return new StoreUnavailableError(why);
    },
    whenReady(timeoutMs) {
      if (client.status === "ready") return Promise.resolve(true);
      return new Promise((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          waiting.delete(wake);
          resolve(client.status === "ready");
        };
        const timer = timeoutMs === undefined ? undefined : setTimeout(wake, timeoutMs);
        waiting.add(wake);
      });
    },
  };
}
