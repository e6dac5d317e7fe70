/**
 * Checks the counter invariants I1-I4 over a full history of requests and responses (never a sample).
 *
 * Each entry is one turn request: when it was sent, when its response completed (both from one
 * monotonic clock), its HTTP status (0 for a network failure) and the turno it got, if any.
 *
 * - I1 unique: no turno appears twice for one id, and none at or below the counter's value before the run.
 * - I2 consecutive: the numbers in (before, after] not handed to anyone ("gaps") are zero without
 *   faults; with faults they may not exceed the failed requests (5xx or no answer).
 * - I3 real-time order: if A completed before B was sent, A.turno < B.turno. Checked in O(n log n):
 *   walk by descending turno, keeping the earliest completion among larger turnos; a request sent
 *   after that completion with a smaller turno is a violation.
 * - I4 range: every turno is an integer in [1, Number.MAX_SAFE_INTEGER].
 */
export interface HistoryEntry {
  readonly id: string;
  readonly sentAt: number;
  readonly doneAt: number;
  /** HTTP status; 0 when the request got no answer (connection refused, reset, timeout). */
  readonly status: number;
  readonly turno?: number;
}

export interface CheckOptions {
  /** Counter value of each id before the run (default 0). */
  readonly before?: ReadonlyMap<string, number>;
  /** Counter value of each id after the run (from /actual); default: the highest turno seen. */
  readonly after?: ReadonlyMap<string, number>;
  /** Faults were injected: gaps are allowed up to the number of failed requests. */
  readonly faults?: boolean;
}

export interface IdVerdict {
  readonly id: string;
  readonly requests: number;
  readonly issued: number;
  /** Requests with a 5xx or no answer: the only ones that may have lost a number. */
  readonly failed: number;
  readonly duplicates: number;
  readonly belowStart: number;
  readonly gaps: number;
  readonly orderViolations: number;
  readonly outOfRange: number;
  readonly highest: number;
}

export interface Verdict {
  readonly ok: boolean;
  readonly problems: string[];
  readonly ids: IdVerdict[];
  readonly totals: {
    requests: number;
    issued: number;
    failed: number;
    duplicates: number;
    gaps: number;
    orderViolations: number;
    outOfRange: number;
  };
}

export function checkHistory(history: readonly HistoryEntry[], options: CheckOptions = {}): Verdict {
  const byId = new Map<string, HistoryEntry[]>();
  for (const entry of history) {
    const list = byId.get(entry.id);
    if (list === undefined) byId.set(entry.id, [entry]);
    else list.push(entry);
  }
  const ids = [...byId].map(([id, entries]) => checkId(id, entries, options));
  const sum = (pick: (v: IdVerdict) => number) => ids.reduce((total, v) => total + pick(v), 0);
  const problems: string[] = [];
  for (const v of ids) {
    if (v.outOfRange > 0) problems.push(`I4 ${v.id}: ${v.outOfRange} turnos outside [1, MAX_SAFE_INTEGER]`);
    if (v.duplicates > 0) problems.push(`I1 ${v.id}: ${v.duplicates} duplicate turnos`);
    if (v.belowStart > 0) problems.push(`I1 ${v.id}: ${v.belowStart} turnos at or below the value before the run`);
    if (v.orderViolations > 0)
      problems.push(`I3 ${v.id}: ${v.orderViolations} requests got a smaller turno than one completed before they were sent`);
    const allowedGaps = options.faults === true ? v.failed : 0;
    if (v.gaps > allowedGaps)
      problems.push(`I2 ${v.id}: ${v.gaps} numbers never handed out (allowed: ${allowedGaps}, failed requests: ${v.failed})`);
  }
  return {
    ok: problems.length === 0,
    problems,
    ids,
    totals: {
      requests: history.length,
      issued: sum((v) => v.issued),
      failed: sum((v) => v.failed),
      duplicates: sum((v) => v.duplicates + v.belowStart),
      gaps: sum((v) => v.gaps),
      orderViolations: sum((v) => v.orderViolations),
      outOfRange: sum((v) => v.outOfRange),
    },
  };
}

function checkId(id: string, entries: HistoryEntry[], options: CheckOptions): IdVerdict {
  const start = options.before?.get(id) ?? 0;
  const succeeded: HistoryEntry[] = [];
  let failed = 0;
  let outOfRange = 0;
  for (const entry of entries) {
    if (entry.turno !== undefined) {
      if (!Number.isSafeInteger(entry.turno) || entry.turno < 1) outOfRange++;
      else succeeded.push(entry);
    } else if (entry.status === 0 || entry.status >= 500) {
      failed++;
    }
  }
  const seen = new Set<number>();
  let duplicates = 0;
  let belowStart = 0;
  let highest = start;
  for (const entry of succeeded) {
    const turno = entry.turno as number;
    if (seen.has(turno)) duplicates++;
    else seen.add(turno);
    if (turno <= start) belowStart++;
    if (turno > highest) highest = turno;
  }
  const end = Math.max(options.after?.get(id) ?? highest, highest);
  let inRange = 0;
  for (const turno of seen) if (turno > start) inRange++;
  return {
    id,
    requests: entries.length,
    issued: succeeded.length,
    failed,
    duplicates,
    belowStart,
    gaps: end - start - inRange,
    orderViolations: countOrderViolations(succeeded),
    outOfRange,
    highest,
  };
}

function countOrderViolations(succeeded: HistoryEntry[]): number {
  const byTurnoDescending = [...succeeded].sort((a, b) => (b.turno as number) - (a.turno as number));
  let earliestDoneAmongLarger = Number.POSITIVE_INFINITY;
  let violations = 0;
  let i = 0;
  while (i < byTurnoDescending.length) {
    // Entries with equal turnos (duplicates, reported under I1) must not be compared with each other.
    let j = i;
    const turno = byTurnoDescending[i]?.turno;
    while (j < byTurnoDescending.length && byTurnoDescending[j]?.turno === turno) {
      if ((byTurnoDescending[j] as HistoryEntry).sentAt > earliestDoneAmongLarger) violations++;
      j++;
    }
    for (let k = i; k < j; k++)
      earliestDoneAmongLarger = Math.min(earliestDoneAmongLarger, (byTurnoDescending[k] as HistoryEntry).doneAt);
    i = j;
  }
  return violations;
}

/** One line per problem plus the totals, for test failure messages and load-test output. */
export function formatVerdict(verdict: Verdict): string {
  const t = verdict.totals;
  const head = `${verdict.ok ? "OK" : "VIOLATIONS"}: ${t.requests} requests, ${t.issued} turnos issued, ${t.failed} failed, ${t.duplicates} duplicates, ${t.gaps} gaps, ${t.orderViolations} order violations, ${t.outOfRange} out of range`;
  return [head, ...verdict.problems.slice(0, 20)].join("\n");
}
