import type { HistoryEntry } from "./history-checker.ts";

export interface TurnLoadOptions {
  /** Base URL of the service (or load balancer). */
  readonly url: string;
  /** Ids to spread the requests over (round-robin per client). */
  readonly ids: readonly string[];
  /** Concurrent clients, each with one request in flight at a time. */
  readonly clients: number;
  /** Total requests (bounded, so the run always ends). */
  readonly requests: number;
  /** Per-request timeout (ms). */
  readonly timeoutMs?: number;
  /** Stop early after this long (ms), whatever is left. */
  readonly maxDurationMs?: number;
  readonly method?: "GET" | "POST";
  /**
   * Batch turns: the count of the client's r-th request (1 = a single turn); a count above 1 is sent
   * as POST /turno/:id?count=k. Default: every request a single turn.
   */
  readonly count?: (client: number, r: number) => number;
  /** An Idempotency-Key for the client's r-th request, or undefined for none. Default none. */
  readonly key?: (client: number, r: number) => string | undefined;
}

/**
 * Closed-loop load for tests: `clients` loops, each sending one request at a time until `requests`
 * have been sent, recording every request's send and completion time, status and turno.
 */
export async function runTurnLoad(options: TurnLoadOptions): Promise<HistoryEntry[]> {
  const history: HistoryEntry[] = [];
  const timeoutMs = options.timeoutMs ?? 5000;
  const stopAt = performance.now() + (options.maxDurationMs ?? 120_000);
  let next = 0;
  const client = async (clientIndex: number) => {
    let k = clientIndex;
    for (let r = 0; next < options.requests && performance.now() < stopAt; r++) {
      next++;
      const id = options.ids[k++ % options.ids.length] as string;
      const count = options.count?.(clientIndex, r) ?? 1;
      const key = options.key?.(clientIndex, r);
      const headers = key === undefined ? undefined : { "idempotency-key": key };
      history.push(
        count > 1
          ? await requestBatch(options.url, id, count, timeoutMs, headers)
          : await requestTurn(options.url, id, timeoutMs, options.method ?? "GET", headers),
      );
    }
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  return history;
}

/** One turn request, recorded; network errors become status 0. */
export async function requestTurn(
  url: string,
  id: string,
  timeoutMs: number,
  method: "GET" | "POST" = "GET",
  headers?: Record<string, string>,
): Promise<HistoryEntry> {
  const sentAt = performance.now();
  try {
    const response = await fetch(`${url}/turno/${id}`, { method, headers, signal: AbortSignal.timeout(timeoutMs) });
    const text = await response.text();
    const doneAt = performance.now();
    if (response.status !== 200) return { id, sentAt, doneAt, status: response.status };
    const body = JSON.parse(text) as { id: string; turno: number };
    if (body.id !== id) throw new Error(`response for ${id} names id ${body.id}`);
    return { id, sentAt, doneAt, status: 200, turno: body.turno };
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("response for")) throw error;
    return { id, sentAt, doneAt: performance.now(), status: 0 };
  }
}

/** One batch turn (POST /turno/:id?count=k), recorded with its range; network errors become status 0. */
export async function requestBatch(
  url: string,
  id: string,
  count: number,
  timeoutMs: number,
  headers?: Record<string, string>,
): Promise<HistoryEntry> {
  const sentAt = performance.now();
  try {
    const response = await fetch(`${url}/turno/${id}?count=${count}`, {
      method: "POST",
      headers,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    const doneAt = performance.now();
    if (response.status !== 200) return { id, sentAt, doneAt, status: response.status, count };
    const body = JSON.parse(text) as { id: string; first: number; last: number };
    if (body.id !== id) throw new Error(`response for ${id} names id ${body.id}`);
    return { id, sentAt, doneAt, status: 200, first: body.first, last: body.last, count };
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("response for")) throw error;
    return { id, sentAt, doneAt: performance.now(), status: 0, count };
  }
}

/** Reads /turno/:id/actual for each id. */
export async function readCounters(url: string, ids: readonly string[]): Promise<Map<string, number>> {
  const values = new Map<string, number>();
  for (const id of ids) {
    const response = await fetch(`${url}/turno/${id}/actual`);
    const body = (await response.json()) as { turno?: number };
    // A service refusing its store (store-guard.ts) answers 503: the checker then uses the highest seen.
    if (response.ok && typeof body.turno === "number") values.set(id, body.turno);
  }
  return values;
}
