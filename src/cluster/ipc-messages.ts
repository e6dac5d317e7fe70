/**
 * Messages between the supervisor and its workers over Bun's IPC channel (JSON serialization).
 * Kept in one file so both sides agree on the shapes.
 */
import type { BusyId } from "../observability/busy-ids.ts";

/** Supervisor -> worker: send me your registry as JSON (for the host-wide /metrics). */
export interface MetricsRequest {
  readonly type: "metrics-request";
  readonly seq: number;
}

/** Worker -> supervisor: this worker's `registry.getMetricsAsJSON()` and its busiest ids. */
export interface MetricsReply {
  readonly type: "metrics-reply";
  readonly seq: number;
  readonly metrics: readonly object[];
  readonly busiest?: readonly BusyId[];
}

export function isMetricsRequest(message: unknown): message is MetricsRequest {
  return typeof message === "object" && message !== null && (message as { type?: unknown }).type === "metrics-request";
}

export function isMetricsReply(message: unknown): message is MetricsReply {
  return (
    typeof message === "object" &&
    message !== null &&
    (message as { type?: unknown }).type === "metrics-reply" &&
    Array.isArray((message as { metrics?: unknown }).metrics)
  );
}
