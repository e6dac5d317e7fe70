/**
 * turnoload: our own open-loop generator. Request k is due at start + k / rate, whatever happened to
 * the earlier ones (constant arrival rate), and its latency is measured from that intended time, so
 * a stalled server shows up as latency instead of silently lowering the offered load (coordinated
 * omission, as in wrk2 / HdrHistogram). `connections` caps the requests in flight; a due request
 * that finds the cap full waits, and that wait counts in its latency.
 *
 * Requests go over our own keep-alive pool (http-pool.ts), one request in flight per connection.
 * It records the full history (id, sentAt, doneAt, status, turno) for the I1-I4 checker; sentAt is
 * the moment fetch was called (the request cannot reach the server earlier), which keeps the
 * real-time order check free of false alarms. Optionally a fraction of hostile requests (invalid
 * ids, methods that must not increment, bad idempotency keys) is mixed in on the same ids: they
 * must get a 4xx (or 204 for OPTIONS), and an increment caused by one shows up as a gap.
 */
import type { HistoryEntry } from "../../test/helpers/history-checker.ts";
import { allIds, createPicker } from "../ids.ts";
import type { LoadOptions } from "../options.ts";
import { percentiles, progress } from "../result.ts";
import { readCounters, verifyHistory } from "../verify.ts";
import { HttpPool } from "./http-pool.ts";
import { countStatus, non2xxOf, type ToolOutcome } from "./tool.ts";

export const DEFAULT_RATE = 1000;

interface HostileRequest {
  readonly kind: string;
  readonly method: string;
  readonly path: string;
  readonly headers?: Record<string, string>;
}

/** Hostile requests aimed at the ids under load; none may increment anything. */
export function hostileRequest(id: string, random: () => number = Math.random): HostileRequest {
  const forms: (() => HostileRequest)[] = [
    () => ({
      kind: "method",
      method: ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"][Math.floor(random() * 5)] as string,
      path: `/turno/${id}`,
    }),
    () => ({ kind: "bad-id", method: "GET", path: `/turno/${id}%21` }),
    () => ({ kind: "slash-id", method: "GET", path: `/turno/${id}%2Fx` }),
    () => ({ kind: "long-id", method: "GET", path: `/turno/${id}${"x".repeat(65)}` }),
    () => ({ kind: "bad-encoding", method: "GET", path: `/turno/${id}%ZZ` }),
    () => ({ kind: "nul", method: "POST", path: `/turno/${id}%00` }),
    () => ({ kind: "bad-key", method: "GET", path: `/turno/${id}`, headers: { "idempotency-key": "k".repeat(200) } }),
    () => ({ kind: "unknown-path", method: "GET", path: `/turno/${id}/next` }),
    () => ({
      kind: "admin-no-token",
      method: "PUT",
      path: `/admin/turno/${id}`,
      headers: { "content-type": "application/json" },
    }),
  ];
  return (forms[Math.floor(random() * forms.length)] as () => HostileRequest)();
}

export interface TurnoloadRun {
  readonly history: HistoryEntry[];
  /** Latency of every non-hostile request from its intended send time (ms). */
  readonly latencies: Float64Array;
  readonly statusCounts: Record<string, number>;
  readonly errors: number;
  readonly shapeErrors: string[];
  readonly hostile: { sent: number; refused: number; wrong: number; examples: string[] };
  readonly seconds: number;
  readonly offered: number;
  /** Requests that were due but still waiting for a free slot when they were sent, at most. */
  readonly maxBacklog: number;
}

/** Drives the load and records everything; no verification (see runTurnoload). */
export async function driveOpenLoop(options: LoadOptions, ids: readonly string[], rate: number): Promise<TurnoloadRun> {
  const pick = createPicker(options.dist, ids.length);
  const total = Math.max(1, Math.floor(rate * options.duration));
  const interval = 1000 / rate;
  const history: HistoryEntry[] = [];
  const latencies = new Float64Array(total);
  let latencyCount = 0;
  const statusCounts: Record<string, number> = {};
  const shapeErrors: string[] = [];
  const hostile = { sent: 0, refused: 0, wrong: 0, examples: [] as string[] };
  let errors = 0;
  let maxBacklog = 0;

  const pool = new HttpPool(options.target, options.connections, options.timeoutMs);

  const sendGood = async (id: string, intended: number) => {
    const sentAt = performance.now();
    let entry: HistoryEntry;
    try {
      const response = await pool.request("GET", `/turno/${id}`);
      const doneAt = performance.now();
      countStatus(statusCounts, response.status);
      entry = { id, sentAt, doneAt, status: response.status };
      if (response.status === 200) {
        const turno = parseTurno(response.body, id);
        if (turno === undefined) {
          if (shapeErrors.length < 20) shapeErrors.push(`${id}: ${response.body.slice(0, 120)}`);
          else shapeErrors.length++;
        } else entry = { ...entry, turno };
      }
    } catch {
      errors++;
      entry = { id, sentAt, doneAt: performance.now(), status: 0 };
    }
    history.push(entry);
    latencies[latencyCount++] = entry.doneAt - intended;
  };

  const sendHostile = async (id: string) => {
    const request = hostileRequest(id);
    hostile.sent++;
    const headers = Object.entries(request.headers ?? {})
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join("");
    try {
      const response = await pool.request(request.method, request.path, headers);
      const refused =
        (response.status >= 400 && response.status < 500) || (request.method === "OPTIONS" && response.status === 204);
      if (refused) hostile.refused++;
      else {
        hostile.wrong++;
        if (hostile.examples.length < 10)
          hostile.examples.push(
            `${request.kind} ${request.method} ${request.path} -> ${response.status} ${response.body.slice(0, 100)}`,
          );
      }
    } catch (error) {
      hostile.wrong++;
      if (hostile.examples.length < 10)
        hostile.examples.push(`${request.kind} ${request.method} ${request.path} -> ${String(error)}`);
    }
  };

  const backlog: (() => void)[] = [];
  const next = () => {
    const go = backlog.shift();
    if (go !== undefined) go();
  };
  const launch = (intended: number) => {
    const id = ids[pick()] as string;
    const isHostile = options.hostile > 0 && Math.random() < options.hostile;
    const go = () => {
      const done = isHostile ? sendHostile(id) : sendGood(id, intended);
      void done.finally(next);
    };
    // A due request that finds every connection busy waits; its latency still counts from `intended`.
    if (pool.idle > 0 && backlog.length === 0) go();
    else {
      backlog.push(go);
      if (backlog.length > maxBacklog) maxBacklog = backlog.length;
    }
  };

  const start = performance.now();
  let sent = 0;
  let lastReport = start;
  while (sent < total) {
    const now = performance.now();
    const due = Math.min(total, Math.floor((now - start) / interval) + 1);
    while (sent < due) {
      launch(start + sent * interval);
      sent++;
    }
    if (now - lastReport >= 5000) {
      lastReport = now;
      progress(
        `turnoload ${((now - start) / 1000).toFixed(0)}s: ${sent}/${total} due, ${history.length} answered, ${options.connections - pool.idle} in flight, ${backlog.length} waiting, ${errors} errors`,
      );
    }
    const nextDue = start + sent * interval;
    // At least 1 ms: sub-millisecond sleeps cost more CPU than the requests; what is due by then is
    // sent together, and its latency still counts from each intended time.
    await Bun.sleep(Math.max(1, Math.min(5, nextDue - performance.now())));
  }
  const until = performance.now() + options.timeoutMs * 2 + 1000;
  while ((pool.idle < options.connections || backlog.length > 0) && performance.now() < until) await Bun.sleep(5);
  const seconds = (performance.now() - start) / 1000;
  pool.close();
  return {
    history,
    latencies: latencies.subarray(0, latencyCount),
    statusCounts,
    errors,
    shapeErrors,
    hostile,
    seconds,
    offered: rate,
    maxBacklog,
  };
}

/** `{"id":"<id>","turno":<n>}` with the requested id, or undefined. */
export function parseTurno(text: string, id: string): number | undefined {
  try {
    const body = JSON.parse(text) as { id?: unknown; turno?: unknown };
    if (body.id !== id || typeof body.turno !== "number" || Object.keys(body).length !== 2) return undefined;
    return body.turno;
  } catch {
    return undefined;
  }
}

export async function runTurnoload(options: LoadOptions): Promise<ToolOutcome> {
  const rate = options.rate ?? DEFAULT_RATE;
  const ids = allIds(options.idPrefix, options.ids);
  const before = options.verify ? await readCounters(options.target, ids) : new Map<string, number>();
  progress(`turnoload: open loop at ${rate} req/s for ${options.duration}s over ${ids.length} ids (${options.dist})`);
  const run = await driveOpenLoop(options, ids, rate);
  const notes = [
    "open loop: latency measured from each request's intended send time (free of coordinated omission)",
    `at most ${run.maxBacklog} due requests waited for one of the ${options.connections} in-flight slots`,
  ];
  const extraProblems: string[] = [];
  if (run.shapeErrors.length > 0)
    extraProblems.push(`${run.shapeErrors.length} 200 responses without {"id","turno"}: ${run.shapeErrors[0]}`);
  if (run.hostile.wrong > 0)
    extraProblems.push(
      `${run.hostile.wrong} of ${run.hostile.sent} hostile requests were not refused with a 4xx: ${run.hostile.examples.join("; ")}`,
    );
  let verification: ToolOutcome["verification"];
  if (options.verify) {
    const after = await readCounters(options.target, ids);
    verification = verifyHistory(run.history, before, after, extraProblems);
  }
  return {
    requests: run.history.length + run.hostile.sent,
    seconds: run.seconds,
    latencyMs: percentiles(run.latencies),
    errors: run.errors,
    non2xx: non2xxOf(run.statusCounts),
    statusCounts: run.statusCounts,
    verification,
    notes,
    extra: { offeredRate: rate, hostile: run.hostile, maxBacklog: run.maxBacklog },
  };
}
