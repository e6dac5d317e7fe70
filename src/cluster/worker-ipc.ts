/**
 * The worker side of supervisor mode: answers the supervisor's metrics requests with this process's
 * prom-client registry, and shuts the worker down when the supervisor is gone (its IPC channel
 * closes, e.g. after a kill -9), so no orphan keeps serving on the shared port unsupervised.
 */
import type { Registry } from "prom-client";
import type { BusyId } from "../observability/busy-ids.ts";
import { isMetricsRequest, type MetricsReply } from "./ipc-messages.ts";

/** TURNOMATIC_WORKER_ID, set by the supervisor for each worker it spawns; undefined outside supervisor mode. */
export function workerId(env: Readonly<Record<string, string | undefined>> = process.env): number | undefined {
  const raw = env.TURNOMATIC_WORKER_ID;
  if (raw === undefined || raw === "") return undefined;
  const id = Number(raw);
  return Number.isSafeInteger(id) && id >= 0 ? id : undefined;
}

/**
 * Wires the IPC channel of a worker; `onOrphaned` runs once if the supervisor goes away. Metrics
 * requests are answered from `registry`; `busiest` gives this worker's busiest ids for the host-wide
 * status page.
 */
export function attachWorkerIpc(registry: Registry, onOrphaned: () => void, busiest: () => readonly BusyId[] = () => []): void {
  const send = process.send?.bind(process);
  if (send === undefined) return;
  process.on("message", (message: unknown) => {
    if (!isMetricsRequest(message)) return;
    void registry.getMetricsAsJSON().then((metrics) => {
      const reply: MetricsReply = { type: "metrics-reply", seq: message.seq, metrics, busiest: busiest() };
      send(reply);
    });
  });
  process.once("disconnect", onOrphaned);
}
