/**
 * The frame of every chaos scenario: closed-loop load against a running service while a fault script
 * runs, the full history judged by the history checker, and the figures docs/guides/redis.md reports.
 *
 * Figures (all times from the test process's monotonic clock):
 * - duplicates, gaps, failed: the checker's totals (gaps must stay <= failed requests).
 * - recoveryMs: from the fault (or, for a partition, from the heal) to the completion of the first
 *   successful request sent after the last failed one; 0 when nothing failed; with several fault
 *   cycles, the longest.
 * - slowestFailureMs: the longest time a failed request waited for its answer (a 503 must come
 *   within the deadline, not hang).
 */
import { checkHistory, formatVerdict, type HistoryEntry, type Verdict } from "../../harness/history-checker.ts";
import { readCounters } from "../../harness/turn-load.ts";

/** Long variants run with TURNOMATIC_FULL=1; the default (CI) run keeps each scenario short. */
export const FULL = process.env.TURNOMATIC_FULL === "1";

/** Load before the first fault and after the last, shared by the failover scenarios. */
export const FAILOVER_PHASES = { warmupMs: FULL ? 5000 : 1500, tailMs: FULL ? 5000 : 2000 } as const;

export interface ChaosOptions {
  readonly url: string;
  readonly ids: readonly string[];
  readonly clients: number;
  /** Per-request client timeout (ms); above the service deadline so 503s are seen, not timeouts. */
  readonly timeoutMs?: number;
  /** Load before the fault script starts (ms). */
  readonly warmupMs: number;
  /** Load after the fault script ended (ms). */
  readonly tailMs: number;
  /** Hard bound on the whole run (ms). */
  readonly maxMs?: number;
  /** The faults; `mark` records when something happened (e.g. "fault", "heal"). */
  readonly faults: (mark: (label: string) => void) => Promise<void>;
}

export interface ChaosResult {
  readonly history: HistoryEntry[];
  /** Failed requests by problem code ("no answer" for network errors), with the first detail seen. */
  readonly failures: Map<string, { count: number; detail: string }>;
  readonly marks: Map<string, number>;
  readonly verdict: Verdict;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const history: HistoryEntry[] = [];
  const failures = new Map<string, { count: number; detail: string }>();
  const marks = new Map<string, number>();
  const timeoutMs = options.timeoutMs ?? 5000;
  const hardStop = performance.now() + (options.maxMs ?? 180_000);
  let stopped = false;
  const client = async (index: number) => {
    let k = index;
    while (!stopped && performance.now() < hardStop) {
      const id = options.ids[k++ % options.ids.length] as string;
      history.push(await requestTurn(options.url, id, timeoutMs, failures));
    }
  };
  const load = Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  try {
    await Bun.sleep(options.warmupMs);
    await options.faults((label) => marks.set(label, performance.now()));
    await Bun.sleep(options.tailMs);
  } finally {
    stopped = true;
    await load;
  }
  const after = await readCounters(options.url, options.ids);
  return { history, failures, marks, verdict: checkHistory(history, { faults: true, after }) };
}

/** One turn request, recorded like turn-load.ts does, plus why it failed (problem code and detail). */
async function requestTurn(
  url: string,
  id: string,
  timeoutMs: number,
  failures: Map<string, { count: number; detail: string }>,
): Promise<HistoryEntry> {
  const sentAt = performance.now();
  const fail = (code: string, detail: string) => {
    const seen = failures.get(code);
    if (seen === undefined) failures.set(code, { count: 1, detail });
    else seen.count++;
  };
  let status = 0;
  try {
    const response = await fetch(`${url}/turno/${id}`, { signal: AbortSignal.timeout(timeoutMs) });
    status = response.status;
    const body = (await response.json()) as { id?: string; turno?: number; code?: string; detail?: string };
    const doneAt = performance.now();
    if (status === 200) {
      if (body.id !== id) throw new Error(`response for ${id} names id ${body.id}`);
      return { id, sentAt, doneAt, status, turno: body.turno as number };
    }
    fail(body.code ?? `HTTP ${status}`, body.detail ?? "");
    return { id, sentAt, doneAt, status };
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("response for")) throw error;
    fail(status === 0 ? "no answer" : `HTTP ${status}`, String(error));
    return { id, sentAt, doneAt: performance.now(), status };
  }
}

export interface ChaosFigures {
  readonly scenario: string;
  readonly requests: number;
  readonly issued: number;
  readonly failed: number;
  readonly duplicates: number;
  readonly gaps: number;
  readonly orderViolations: number;
  readonly recoveryMs: number;
  readonly slowestFailureMs: number;
  readonly noAnswer: number;
  /** Failed requests by problem code. */
  readonly failuresByCode: Record<string, number>;
}

/**
 * The figures of one run. Recovery is measured from each mark named `from` or `from:<n>` (one per
 * fault cycle) and the longest is reported; with `healedAt`, from that mark instead (one cycle).
 */
export function figures(scenario: string, result: ChaosResult, from: string, healedAt?: string): ChaosFigures {
  const { history, verdict } = result;
  const starts = [...result.marks]
    .filter(([label]) => label === from || label.startsWith(`${from}:`))
    .map(([, at]) => at)
    .sort((a, b) => a - b);
  if (starts.length === 0) throw new Error(`the fault script never marked '${from}'`);
  const failures = history.filter((e) => e.turno === undefined);
  // For a fault that lasts (a partition), recovery counts from its end, not its start.
  const healedAfter = healedAt === undefined ? 0 : (result.marks.get(healedAt) ?? 0) - (starts[0] as number);
  const recoveryMs =
    -healedAfter +
    Math.max(...starts.map((start, i) => recoveryAfter(history, start, starts[i + 1] ?? Number.POSITIVE_INFINITY)));
  const t = verdict.totals;
  const line: ChaosFigures = {
    scenario,
    requests: t.requests,
    issued: t.issued,
    failed: t.failed,
    duplicates: t.duplicates,
    gaps: t.gaps,
    orderViolations: t.orderViolations,
    recoveryMs: Math.round(recoveryMs),
    slowestFailureMs: Math.round(failures.reduce((slowest, e) => Math.max(slowest, e.doneAt - e.sentAt), 0)),
    noAnswer: failures.filter((e) => e.status === 0).length,
    failuresByCode: Object.fromEntries([...result.failures].map(([code, { count }]) => [code, count])),
  };
  // One line per scenario, grep-able from the test output ("CHAOS {...}") for docs/guides/redis.md.
  console.log(`CHAOS ${JSON.stringify(line)}`);
  return line;
}

/**
 * From `start` to the first success sent after the last failure of this cycle (failures that ended
 * between `start` and the next cycle's start: a request cut by the next fault belongs to that one);
 * 0 when the cycle caused no failure, infinite when service never came back.
 */
function recoveryAfter(history: readonly HistoryEntry[], start: number, end: number): number {
  let lastFailureSent = Number.NEGATIVE_INFINITY;
  for (const e of history)
    if (e.turno === undefined && e.doneAt >= start && e.doneAt < end) lastFailureSent = Math.max(lastFailureSent, e.sentAt);
  if (lastFailureSent === Number.NEGATIVE_INFINITY) return 0;
  let firstSuccess = Number.POSITIVE_INFINITY;
  for (const e of history)
    if (e.turno !== undefined && e.sentAt > lastFailureSent) firstSuccess = Math.min(firstSuccess, e.doneAt);
  return firstSuccess - start;
}

/** Throws with the checker's report unless the run kept I1-I4 (gaps <= failed requests). */
export function expectVerdictOk(result: ChaosResult): void {
  if (!result.verdict.ok) throw new Error(`${formatVerdict(result.verdict)}\n${describeFailures(result)}`);
}

/** The failure codes with one detail each, for test failure messages. */
export function describeFailures(result: ChaosResult): string {
  return [...result.failures].map(([code, { count, detail }]) => `${count} x ${code}: ${detail}`).join("\n");
}

/** How many times the service logged a rollback fence. */
export function countFences(logs: string): number {
  return logs.split("\n").filter((line) => line.includes('"store.rollback_fenced"')).length;
}
