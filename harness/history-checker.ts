/**
 * Checks the counter invariants I1-I4 over a full history of requests and responses (never a sample).
 *
 * Each entry is one turn request: when it was sent, when its response completed (both from one
 * monotonic clock), its HTTP status (0 for a network failure) and the turno it got, if any, or, for
 * a batch turn (`POST /turno/:id?count=k`), the range first..last it got. Every number of a range
 * counts: a range is its numbers, handed out by one response.
 *
 * - I1 unique: no number appears twice for one id (in two turns, two ranges, or a turn and a range),
 *   and none at or below the counter's value before the run.
 * - I2 consecutive: the numbers in (before, after] not handed to anyone ("gaps") are zero without
 *   faults; with faults they may not exceed the numbers the failed requests (5xx or no answer) asked
 *   for (a batch's count). A range must hold exactly the count asked for (when the entry says it).
 * - I3 real-time order: if A completed before B was sent, every number of A is below every number
 *   of B. With I1 (ranges disjoint), comparing first numbers is comparing all of them; checked in
 *   O(n log n): walk by descending first number, keeping the earliest completion among larger ones;
 *   a request sent after that completion with a smaller first number is a violation.
 * - I4 range: every number is an integer in [1, Number.MAX_SAFE_INTEGER], and first <= last.
 */
export interface HistoryEntry {
  readonly id: string;
  readonly sentAt: number;
  readonly doneAt: number;
  /** HTTP status; 0 when the request got no answer (connection refused, reset, timeout). */
  readonly status: number;
  /** A single turn's number. */
  readonly turno?: number;
  /** A batch turn's first and last numbers (both, instead of turno). */
  readonly first?: number;
  readonly last?: number;
  /** Numbers the request asked for (a batch turn's count); default 1. */
  readonly count?: number;
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
  /** Requests answered with a number or a range. */
  readonly issued: number;
  /** Numbers handed out (a range counts each of its numbers). */
  readonly numbers: number;
  /** Requests with a 5xx or no answer: the only ones that may have lost a number. */
  readonly failed: number;
  /** Numbers those failed requests asked for: the gaps allowed with faults. */
  readonly failedNumbers: number;
  /** Ranges whose size is not the count asked for. */
  readonly wrongSize: number;
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
    numbers: number;
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
    if (v.wrongSize > 0) problems.push(`I2 ${v.id}: ${v.wrongSize} ranges of another size than the count asked for`);
    if (v.duplicates > 0) problems.push(`I1 ${v.id}: ${v.duplicates} duplicate turnos`);
    if (v.belowStart > 0) problems.push(`I1 ${v.id}: ${v.belowStart} turnos at or below the value before the run`);
    if (v.orderViolations > 0)
      problems.push(`I3 ${v.id}: ${v.orderViolations} requests got a smaller turno than one completed before they were sent`);
    const allowedGaps = options.faults === true ? v.failedNumbers : 0;
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
      numbers: sum((v) => v.numbers),
      failed: sum((v) => v.failed),
      duplicates: sum((v) => v.duplicates + v.belowStart),
      gaps: sum((v) => v.gaps),
      orderViolations: sum((v) => v.orderViolations),
      outOfRange: sum((v) => v.outOfRange),
    },
  };
}

/** A successful entry as the numbers lo..hi it got, with its timing. */
interface Span {
  readonly lo: number;
  readonly hi: number;
  readonly sentAt: number;
  readonly doneAt: number;
}

/** The entry's numbers lo..hi, or undefined when it got none. */
function spanOf(entry: HistoryEntry): { lo: number; hi: number } | undefined {
  if (entry.turno !== undefined) return { lo: entry.turno, hi: entry.turno };
  if (entry.first !== undefined || entry.last !== undefined)
    return { lo: entry.first ?? Number.NaN, hi: entry.last ?? Number.NaN };
  return undefined;
}

function checkId(id: string, entries: HistoryEntry[], options: CheckOptions): IdVerdict {
  const start = options.before?.get(id) ?? 0;
  const spans: Span[] = [];
  let failed = 0;
  let failedNumbers = 0;
  let outOfRange = 0;
  let wrongSize = 0;
  for (const entry of entries) {
    const got = spanOf(entry);
    if (got !== undefined) {
      const { lo, hi } = got;
      if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || lo < 1 || hi < lo) {
        outOfRange++;
        continue;
      }
      if (entry.count !== undefined && hi - lo + 1 !== entry.count) wrongSize++;
      spans.push({ lo, hi, sentAt: entry.sentAt, doneAt: entry.doneAt });
    } else if (entry.status === 0 || entry.status >= 500) {
      failed++;
      failedNumbers += entry.count ?? 1;
    }
  }
  // I1 and I2 over intervals (a batch of 1000 is not 1000 set entries): sorted by first number, the
  // union's length is the distinct numbers; what the spans hold beyond it is duplicates.
  const byLo = [...spans].sort((a, b) => a.lo - b.lo);
  let numbers = 0;
  let distinctAboveStart = 0;
  let belowStart = 0;
  let covered = start; // the highest number counted so far (numbers at or below start are not counted)
  let highest = start;
  let distinct = 0;
  let reach = 0;
  for (const { lo, hi } of byLo) {
    numbers += hi - lo + 1;
    if (lo <= start) belowStart += Math.min(hi, start) - lo + 1;
    if (hi > reach) {
      distinct += hi - Math.max(lo, reach + 1) + 1;
      reach = hi;
    }
    if (hi > covered) {
      distinctAboveStart += hi - Math.max(lo, covered + 1) + 1;
      covered = hi;
    }
    if (hi > highest) highest = hi;
  }
  const end = Math.max(options.after?.get(id) ?? highest, highest);
  return {
    id,
    requests: entries.length,
    issued: spans.length,
    numbers,
    failed,
    failedNumbers,
    wrongSize,
    duplicates: numbers - distinct,
    belowStart,
    gaps: end - start - distinctAboveStart,
    orderViolations: countOrderViolations(spans),
    outOfRange,
    highest,
  };
}

function countOrderViolations(spans: readonly Span[]): number {
  const byFirstDescending = [...spans].sort((a, b) => b.lo - a.lo);
  let earliestDoneAmongLarger = Number.POSITIVE_INFINITY;
  let violations = 0;
  let i = 0;
  while (i < byFirstDescending.length) {
    // Entries with equal first numbers (duplicates, reported under I1) must not be compared with each other.
    let j = i;
    const lo = byFirstDescending[i]?.lo;
    while (j < byFirstDescending.length && byFirstDescending[j]?.lo === lo) {
      if ((byFirstDescending[j] as Span).sentAt > earliestDoneAmongLarger) violations++;
      j++;
    }
    for (let k = i; k < j; k++)
      earliestDoneAmongLarger = Math.min(earliestDoneAmongLarger, (byFirstDescending[k] as Span).doneAt);
    i = j;
  }
  return violations;
}

/** One line per problem plus the totals, for test failure messages and load-test output. */
export function formatVerdict(verdict: Verdict): string {
  const t = verdict.totals;
  const head = `${verdict.ok ? "OK" : "VIOLATIONS"}: ${t.requests} requests, ${t.issued} turnos issued${t.numbers === t.issued ? "" : ` (${t.numbers} numbers)`}, ${t.failed} failed, ${t.duplicates} duplicates, ${t.gaps} gaps, ${t.orderViolations} order violations, ${t.outOfRange} out of range`;
  return [head, ...verdict.problems.slice(0, 20)].join("\n");
}
