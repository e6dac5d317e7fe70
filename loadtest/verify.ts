/**
 * Turns what a tool recorded into a verdict, always with the history checker over everything that
 * was recorded (never a sample) and the counters read back from /turno/:id/actual after the run.
 */
import { checkHistory, formatVerdict, type HistoryEntry, type Verdict } from "../harness/history-checker.ts";
import type { Verification } from "./result.ts";

/** Reads /turno/:id/actual for every id, a few at a time. Throws if one cannot be read. */
export async function readCounters(target: string, ids: readonly string[], parallel = 16): Promise<Map<string, number>> {
  const values = new Map<string, number>();
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++] as string;
      const response = await fetch(`${target}/turno/${id}/actual`, { signal: AbortSignal.timeout(10_000) });
      const text = await response.text();
      if (response.status !== 200) throw new Error(`GET /turno/${id}/actual answered ${response.status}: ${text.slice(0, 200)}`);
      const body = JSON.parse(text) as { id?: unknown; turno?: unknown };
      if (body.id !== id || typeof body.turno !== "number")
        throw new Error(`GET /turno/${id}/actual answered ${text.slice(0, 200)}`);
      values.set(id, body.turno);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, ids.length) }, worker));
  return values;
}

function counterState(after: ReadonlyMap<string, number>): Verification["counters"] {
  let sum = 0;
  let max = 0;
  for (const value of after.values()) {
    sum += value;
    if (value > max) max = value;
  }
  return { ids: after.size, sum, max };
}

function fromVerdict(
  kind: Verification["kind"],
  verdict: Verdict,
  after: ReadonlyMap<string, number>,
  extra: string[],
): Verification {
  const problems = [...extra, ...verdict.problems];
  return {
    kind,
    ok: problems.length === 0,
    summary:
      formatVerdict(verdict)
        .split("\n")[0]
        ?.replace(/^OK|^VIOLATIONS/, problems.length === 0 ? "OK" : "VIOLATIONS") ?? "",
    problems: problems.slice(0, 50),
    totals: verdict.totals,
    counters: counterState(after),
  };
}

/** Full history with timings: I1-I4 including real-time order. */
export function verifyHistory(
  history: readonly HistoryEntry[],
  before: ReadonlyMap<string, number>,
  after: ReadonlyMap<string, number>,
  extraProblems: string[] = [],
): Verification {
  const faults = history.some((e) => e.status === 0 || e.status >= 500);
  return fromVerdict("history", checkHistory(history, { before, after, faults }), after, extraProblems);
}

export interface RecordedTurno {
  readonly id: string;
  readonly turno: number;
}

/**
 * Turnos recorded without timings (wrk, autocannon): I1, I2 and I4; every entry gets the same
 * send and completion time, so no pair is ordered and I3 is not judged. Requests that failed
 * (transport error or 5xx) and whose id is unknown may each have cost one number, and so may the
 * requests a closed-loop tool abandons in flight when its time is up (at most one per connection):
 * `lostAllowed` of them are allowed as gaps in total, and the verdict says so.
 */
export function verifyTurnos(
  recorded: readonly RecordedTurno[],
  lostAllowed: number,
  before: ReadonlyMap<string, number>,
  after: ReadonlyMap<string, number>,
  extraProblems: string[] = [],
): Verification {
  const history: HistoryEntry[] = recorded.map((r) => ({ id: r.id, sentAt: 0, doneAt: 0, status: 200, turno: r.turno }));
  const verdict = checkHistory(history, { before, after });
  if (lostAllowed === 0 || verdict.ok) return fromVerdict("turnos", verdict, after, extraProblems);
  const gapProblems = verdict.problems.filter((p) => p.startsWith("I2 "));
  const others = verdict.problems.filter((p) => !p.startsWith("I2 "));
  const problems =
    verdict.totals.gaps <= lostAllowed
      ? others
      : [
          ...others,
          `I2: ${verdict.totals.gaps} numbers never handed out, more than the ${lostAllowed} failed or abandoned requests`,
          ...gapProblems,
        ];
  return fromVerdict("turnos", { ...verdict, ok: problems.length === 0, problems }, after, extraProblems);
}

/**
 * One id hammered by a tool that cannot read bodies: the counter must move by at least the 2xx
 * count (less means a number was handed out twice) and by at most that plus the failed requests
 * plus those the tool abandoned in flight when its time was up (at most one per connection).
 */
export function verifyCounterDelta(
  id: string,
  ok2xx: number,
  failed: number,
  before: number,
  after: number,
  abandoned: number,
  extraProblems: string[] = [],
): Verification {
  const moved = after - before;
  const problems = [...extraProblems];
  if (moved < ok2xx)
    problems.push(`I1 ${id}: ${ok2xx} successful responses but the counter moved only ${moved}: numbers were handed out twice`);
  if (moved > ok2xx + failed + abandoned)
    problems.push(
      `I2 ${id}: the counter moved ${moved} for ${ok2xx} successful, ${failed} failed and at most ${abandoned} abandoned requests: numbers were skipped`,
    );
  return {
    kind: "counter-delta",
    ok: problems.length === 0,
    summary: `${problems.length === 0 ? "OK" : "VIOLATIONS"}: ${ok2xx} successful responses, counter ${before} -> ${after} (moved ${moved}), ${failed} failed`,
    problems,
    totals: { issued: ok2xx, failed, moved, abandonedAllowed: abandoned },
    counters: { ids: 1, sum: after, max: after },
  };
}
