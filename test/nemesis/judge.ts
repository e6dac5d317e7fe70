/**
 * The nemesis judge: the history checker (harness/history-checker.ts) over every request of the
 * run, and the store's ledger, with every violation printed next to the faults around it. Pure.
 *
 * How a run's history becomes histories the checker can judge:
 * - Keyed requests (Idempotency-Key): all attempts of one key are one request, sent with its first
 *   attempt and completed with its first success; every success of a key must carry the same turno
 *   (a different one is a violation, unless the store lost its data in between: then it is excused
 *   and counted). A key that never succeeded is one failed request.
 * - Segments. An admin set or reset, and a daily reset (the workload set a schedule and quiesced the
 *   id across its boundary), start a new epoch of its id (no request of its own was in flight); an operator's recovery after a store loss (floor F) starts a
 *   new store life for every id. A request belongs to the epoch and life in force when it was sent,
 *   except that a request in flight across a recovery belongs to the new life only if its turno is
 *   above F. Each (id, epoch, life) is judged as its own id, starting from the value that began it
 *   (0, the set value, or F), so I1, I3 and I4 hold within each segment.
 * - I2 (numbers no client got) is summed per id over its segments: gaps <= failed requests, for the
 *   classes whose clients never resend (raw, admin, keyed). The replaying class's silent gaps are
 *   judged by the ledger instead.
 * - The ledger (issued, delivered, lost) covers the store lives since the last loss of the id's data
 *   (every id's on a single primary; on a Cluster only the ids of the lost shard's slots): unseen = issued minus
 *   the distinct numbers clients saw in that life; unseen <= lost (never an undercount), and
 *   lost - unseen (the overcount: numbers a client saw that no report counted) <= the seen numbers
 *   whose response completed in a window where a delivery report can be dropped: from a flush
 *   interval (plus 1 s slack) before a process was killed to 1 s after, and from a flush interval
 *   before a store fault (primary killed or emptied, failover, app cut from Redis, slow link) to 1 s after it
 *   healed. This follows docs/reference/metrics.md (`turnomatic_store_numbers_lost`: "delivered after that
 *   host's last report: an overcount bounded by --ledger-flush-ms of one host's deliveries";
 *   `turnomatic_ledger_unreported_numbers_total`: a failed report counts as lost). It is looser
 *   than the documented per-host bound: the history does not say which host served a response.
 */
import calculateSlot from "cluster-key-slot";
import { checkHistory, type HistoryEntry } from "../../harness/history-checker.ts";
import type { AdminOp, ClientClass, Ledger, WorkloadEntry } from "./workload.ts";

export interface ExecutedFault {
  readonly n: number;
  readonly kind: string;
  readonly target: string;
  /** Epoch ms (same clock as the history). */
  readonly startAt: number;
  readonly endAt: number;
  readonly detail: string;
}

export interface Recovery {
  /** When the store lost its data (the empty restart) and when the recovery was accepted. */
  readonly lossAt: number;
  readonly at: number;
  readonly floor: number;
  /**
   * Redis Cluster: the slot ranges of the shard that lost its data; the counters (and ledgers) of
   * the other slots survived. Absent: every id's data was lost.
   */
  readonly slots?: ReadonlyArray<readonly [number, number]>;
}

export interface JudgeInput {
  readonly entries: readonly WorkloadEntry[];
  readonly adminOps: readonly AdminOp[];
  readonly recoveries: readonly Recovery[];
  readonly faults: readonly ExecutedFault[];
  /** Every id of the run (also those that got no request) with its class. */
  readonly ids: ReadonlyMap<string, ClientClass>;
  readonly actual: Readonly<Record<string, number>>;
  readonly ledgers: Readonly<Record<string, Ledger>>;
  readonly ledgerFlushMs: number;
}

export interface Violation {
  readonly invariant: "I1" | "I2" | "I3" | "I4" | "idempotency" | "ledger-lower" | "ledger-upper" | "ledger-issued";
  readonly id: string;
  readonly message: string;
  /** Time window of the requests involved (epoch ms). */
  readonly from: number;
  readonly to: number;
}

export interface LedgerRow {
  readonly id: string;
  readonly issued: number;
  readonly delivered: number;
  readonly lost: number;
  readonly seen: number;
  readonly unseen: number;
  readonly overcount: number;
  readonly bound: number;
}

export interface Judgement {
  readonly ok: boolean;
  readonly violations: Violation[];
  /** Requests judged (keyed attempts collapsed per key) and raw attempts. */
  readonly judged: number;
  readonly attempts: number;
  readonly segments: number;
  readonly excusedKeyReplays: number;
  readonly totals: { duplicates: number; gaps: number; failed: number; orderViolations: number; outOfRange: number };
  readonly ledger: LedgerRow[];
}

/** Fault kinds that can drop a delivery report (the ledger then counts a delivered number as lost). */
export const REPORT_RISK_KINDS = new Set([
  "app-kill",
  "worker-kill",
  "redis-kill",
  "redis-empty",
  "failover",
  "part-app-redis",
  "slow-link",
]);
const PROCESS_DEATHS = new Set(["app-kill", "worker-kill"]);
/** Timers fire late on a loaded machine, and report calls take time: slack on each side of a window. */
const REPORT_SLACK_MS = 1000;

interface Judged extends HistoryEntry {
  readonly base: string;
  readonly cls: ClientClass;
}

function collapseKeys(entries: readonly WorkloadEntry[], recoveries: readonly Recovery[], violations: Violation[]) {
  const plain: Judged[] = [];
  const byKey = new Map<string, WorkloadEntry[]>();
  for (const e of entries) {
    if (e.key === undefined) plain.push({ ...e, base: e.id });
    else {
      const k = `${e.id}\u0000${e.key}`;
      const list = byKey.get(k);
      if (list === undefined) byKey.set(k, [e]);
      else list.push(e);
    }
  }
  let excused = 0;
  for (const attempts of byKey.values()) {
    const first = attempts[0] as WorkloadEntry;
    const sentAt = Math.min(...attempts.map((a) => a.sentAt));
    const successes = attempts.filter((a) => a.turno !== undefined);
    if (successes.length === 0) {
      const last = attempts[attempts.length - 1] as WorkloadEntry;
      plain.push({ id: first.id, base: first.id, cls: first.cls, sentAt, doneAt: last.doneAt, status: last.status });
      continue;
    }
    const earliest = successes.reduce((a, b) => (b.doneAt < a.doneAt ? b : a));
    plain.push({
      id: first.id,
      base: first.id,
      cls: first.cls,
      sentAt,
      doneAt: earliest.doneAt,
      status: 200,
      turno: earliest.turno as number,
    });
    const others = [...new Set(successes.map((s) => s.turno as number))].filter((t) => t !== earliest.turno);
    if (others.length === 0) continue;
    const lastSuccess = Math.max(...successes.map((s) => s.doneAt));
    const lossBetween = recoveries.some((r) => r.lossAt >= sentAt && r.lossAt <= lastSuccess);
    if (lossBetween) excused++;
    else
      violations.push({
        invariant: "idempotency",
        id: first.id,
        message: `key ${first.key} got turnos ${[earliest.turno, ...others].join(", ")} (a replay must get the same number)`,
        from: sentAt,
        to: lastSuccess,
      });
    // The other numbers were issued and seen too: judged as requests of their own.
    for (const t of others) {
      const s = successes.find((x) => x.turno === t) as WorkloadEntry;
      plain.push({ id: first.id, base: first.id, cls: first.cls, sentAt: s.sentAt, doneAt: s.doneAt, status: 200, turno: t });
    }
  }
  return { plain, excused };
}

/** The numbers a request got: its turno, or each number of its batch's range. */
function numbersOf(e: HistoryEntry): number[] {
  if (e.turno !== undefined) return [e.turno];
  if (e.first === undefined || e.last === undefined) return [];
  return Array.from({ length: Math.max(0, Math.min(e.last - e.first + 1, 100_000)) }, (_, i) => (e.first as number) + i);
}

/**
 * Store life of a request: recoveries before it was sent; one sent before a recovery's answer that
 * completed after the loss belongs to the new life when its (first) number is above the floor. Not
 * only when it completed after the answer: the hosts issue from the floor as soon as the recovery's
 * marker is written, before the run hears the answer (nemesis seed 20261202 after the fence fix:
 * numbers 9,000,000,001+ completed in that window were judged as gaps of the life before).
 */
function lifeOf(e: Judged, recoveries: readonly Recovery[]): number {
  const lo = e.turno ?? e.first;
  let life = 0;
  for (const [k, r] of recoveries.entries()) {
    if (e.sentAt >= r.at) life = k + 1;
    else if (e.doneAt > r.lossAt && lo !== undefined && lo > r.floor) life = k + 1;
  }
  return life;
}

export function judge(input: JudgeInput): Judgement {
  const violations: Violation[] = [];
  const { plain, excused } = collapseKeys(input.entries, input.recoveries, violations);
  const opsById = new Map<string, AdminOp[]>();
  for (const op of [...input.adminOps].sort((a, b) => a.doneAt - b.doneAt)) {
    const list = opsById.get(op.id);
    if (list === undefined) opsById.set(op.id, [op]);
    else list.push(op);
  }
  const recoveries = [...input.recoveries].sort((a, b) => a.at - b.at);
  const segmentOf = (e: Judged) => {
    const ops = opsById.get(e.base) ?? [];
    let epoch = 0;
    for (const op of ops) if (op.doneAt <= e.sentAt) epoch++;
    return { epoch, life: lifeOf(e, recoveries) };
  };
  /**
   * The counter's value when a segment began: the later of its admin op and its recovery. `lowest`:
   * the smallest number its requests got (Infinity when they got none; 0 when not looked at).
   */
  const startOf = (base: string, epoch: number, life: number, lowest = 0) => {
    const op = epoch > 0 ? (opsById.get(base) ?? [])[epoch - 1] : undefined;
    const rec = life > 0 ? recoveries[life - 1] : undefined;
    if (op !== undefined && (rec === undefined || op.doneAt > rec.at)) {
      if (op.confirmed === false) return 0;
      // A daily reset in a recovered store life: a counter not written since the recovery starts the
      // new day above the floor, one written since at 1 (docs/guides/operations.md, daily resets).
      // Which one the store did shows in the day's first numbers; either start is correct, and I1
      // and I3 within the segment do not depend on it.
      if (op.op === "daily" && rec !== undefined && lowest > rec.floor) return rec.floor;
      return op.value;
    }
    return rec?.floor ?? 0;
  };
  const segmented: HistoryEntry[] = [];
  const segments = new Map<string, { base: string; epoch: number; life: number; entries: Judged[] }>();
  for (const e of plain) {
    const { epoch, life } = segmentOf(e);
    const seg = `${e.base}|e${epoch}|l${life}`;
    segmented.push({ ...e, id: seg });
    const segment = segments.get(seg);
    if (segment === undefined) segments.set(seg, { base: e.base, epoch, life, entries: [e] });
    else segment.entries.push(e);
  }
  const before = new Map<string, number>();
  for (const [seg, { base, epoch, life, entries }] of segments) {
    let lowest = Number.POSITIVE_INFINITY;
    for (const entry of entries) for (const n of numbersOf(entry)) lowest = Math.min(lowest, n);
    before.set(seg, startOf(base, epoch, life, lowest));
  }
  const after = new Map<string, number>();
  for (const [id, value] of Object.entries(input.actual)) {
    // After an admin operation of unknown effect the counter says nothing about this segment.
    if ((opsById.get(id) ?? []).at(-1)?.confirmed === false) continue;
    const seg = `${id}|e${(opsById.get(id) ?? []).length}|l${recoveries.length}`;
    after.set(seg, value);
    if (!before.has(seg)) before.set(seg, startOf(id, (opsById.get(id) ?? []).length, recoveries.length));
  }
  const verdict = checkHistory(segmented, { before, after, faults: true });
  const span = (list: readonly Judged[]) => ({
    from: Math.min(...list.map((e) => e.sentAt)),
    to: Math.max(...list.map((e) => e.doneAt)),
  });
  const gapsByBase = new Map<string, { gaps: number; failed: number; from: number; to: number; parts: string[] }>();
  for (const v of verdict.ids) {
    const base = v.id.split("|")[0] as string;
    const list = segments.get(v.id)?.entries ?? [];
    const where = list.length > 0 ? span(list) : { from: 0, to: 0 };
    if (v.duplicates > 0 || v.belowStart > 0) {
      const seen = new Map<number, number>();
      for (const e of list) for (const n of numbersOf(e)) seen.set(n, (seen.get(n) ?? 0) + 1);
      const start = before.get(v.id) ?? 0;
      const bad = list.filter((e) => numbersOf(e).some((n) => (seen.get(n) ?? 0) > 1 || n <= start));
      const w = span(bad);
      violations.push({
        invariant: "I1",
        id: base,
        message: `${v.duplicates} duplicate turnos, ${v.belowStart} at or below the segment's start ${start} (segment ${v.id}; e.g. turnos ${[...new Set(bad.flatMap((e) => numbersOf(e)).filter((n) => (seen.get(n) ?? 0) > 1 || n <= start))].slice(0, 5).join(", ")})`,
        ...w,
      });
    }
    if (v.orderViolations > 0)
      violations.push({
        invariant: "I3",
        id: base,
        message: `${v.orderViolations} requests got a smaller turno than one completed before they were sent (segment ${v.id})`,
        ...where,
      });
    if (v.outOfRange > 0)
      violations.push({ invariant: "I4", id: base, message: `${v.outOfRange} turnos outside [1, MAX_SAFE_INTEGER]`, ...where });
    const g = gapsByBase.get(base) ?? { gaps: 0, failed: 0, from: where.from, to: where.to, parts: [] };
    if (v.gaps > v.failedNumbers) {
      // Where the gaps are: the segment, the value it starts from and the numbers seen in it.
      let lo = Number.POSITIVE_INFINITY;
      let hi = 0;
      for (const e of list) for (const n of numbersOf(e)) [lo, hi] = [Math.min(lo, n), Math.max(hi, n)];
      g.parts.push(`${v.id} from ${before.get(v.id) ?? 0}: seen ${lo}..${hi}, ${v.gaps} gaps, ${v.failed} failed`);
    }
    gapsByBase.set(base, {
      gaps: g.gaps + v.gaps,
      failed: g.failed + v.failedNumbers,
      from: Math.min(g.from, where.from),
      to: Math.max(g.to, where.to),
      parts: g.parts,
    });
  }
  for (const [base, g] of gapsByBase) {
    if (input.ids.get(base) === "fetch") continue;
    if (g.gaps > g.failed)
      violations.push({
        invariant: "I2",
        id: base,
        message: `${g.gaps} numbers no client got, but only ${g.failed} requests failed (a client that never resends must see every loss); segments: ${g.parts.slice(0, 5).join("; ")}`,
        from: g.from,
        to: g.to,
      });
  }
  const ledger = judgeLedger(input, plain, recoveries, violations);
  const t = verdict.totals;
  return {
    ok: violations.length === 0,
    violations,
    judged: plain.length,
    attempts: input.entries.length,
    segments: verdict.ids.length,
    excusedKeyReplays: excused,
    totals: {
      duplicates: t.duplicates,
      gaps: t.gaps,
      failed: t.failed,
      orderViolations: t.orderViolations,
      outOfRange: t.outOfRange,
    },
    ledger,
  };
}

function judgeLedger(
  input: JudgeInput,
  plain: readonly Judged[],
  recoveries: readonly Recovery[],
  violations: Violation[],
): LedgerRow[] {
  // A process killed loses what it delivered since its last report (at most a flush interval before
  // the kill); a report that fails (store unreachable, failing over, slow) loses up to a flush
  // interval of deliveries before it, for as long as the fault lasts.
  const windows = input.faults
    .filter((f) => REPORT_RISK_KINDS.has(f.kind))
    .map((f) => {
      const from = f.startAt - input.ledgerFlushMs - REPORT_SLACK_MS;
      return PROCESS_DEATHS.has(f.kind)
        ? ([from, f.startAt + REPORT_SLACK_MS] as const)
        : ([from, f.endAt + REPORT_SLACK_MS] as const);
    });
  const inRisk = (t: number) => windows.some(([a, b]) => t >= a && t <= b);
  // The ledger of an id holds the store lives since the last recovery that wiped that id's data: on
  // a Cluster, a shard's loss wipes only the ids of its slots.
  const ledgerLife = new Map<string, number>();
  for (const id of input.ids.keys()) {
    const slot = calculateSlot(id);
    let life = 0;
    recoveries.forEach((r, i) => {
      if (r.slots === undefined || r.slots.some(([lo, hi]) => slot >= lo && slot <= hi)) life = i + 1;
    });
    ledgerLife.set(id, life);
  }
  const byId = new Map<string, Judged[]>();
  for (const e of plain) {
    if (numbersOf(e).length === 0 || lifeOf(e, recoveries) < (ledgerLife.get(e.base) ?? 0)) continue;
    const list = byId.get(e.base);
    if (list === undefined) byId.set(e.base, [e]);
    else list.push(e);
  }
  const rows: LedgerRow[] = [];
  for (const id of input.ids.keys()) {
    const l = input.ledgers[id];
    if (l === undefined) continue;
    const list = byId.get(id) ?? [];
    // Distinct numbers per admin epoch (a reset makes numbers repeat legitimately).
    const distinct = new Map<string, Judged>();
    const opsDone = input.adminOps.filter((op) => op.id === id).map((op) => op.doneAt);
    for (const e of list) {
      const epoch = opsDone.filter((d) => d <= e.sentAt).length;
      const life = lifeOf(e, recoveries);
      for (const n of numbersOf(e)) distinct.set(`${life}:${epoch}:${n}`, e);
    }
    const seen = distinct.size;
    const bound = [...distinct.values()].filter((e) => inRisk(e.doneAt)).length;
    const unseen = l.issued - seen;
    const overcount = l.lost - unseen;
    rows.push({ id, issued: l.issued, delivered: l.delivered, lost: l.lost, seen, unseen, overcount, bound });
    const where =
      list.length > 0
        ? { from: Math.min(...list.map((e) => e.sentAt)), to: Math.max(...list.map((e) => e.doneAt)) }
        : { from: 0, to: 0 };
    if (unseen < 0)
      violations.push({
        invariant: "ledger-issued",
        id,
        message: `ledger issued ${l.issued} < ${seen} distinct numbers clients saw`,
        ...where,
      });
    if (unseen > l.lost)
      violations.push({
        invariant: "ledger-lower",
        id,
        message: `${unseen} numbers no client saw, but ledger lost is ${l.lost} (an undercount)`,
        ...where,
      });
    if (overcount > bound)
      violations.push({
        invariant: "ledger-upper",
        id,
        message: `ledger lost ${l.lost} exceeds the ${unseen} unseen numbers by ${overcount}, above the documented bound ${bound} (seen numbers within a flush interval of a report-dropping fault)`,
        ...where,
      });
  }
  return rows;
}

/** The executed faults that overlap [from - margin, to + margin]. */
export function faultsAround(faults: readonly ExecutedFault[], from: number, to: number, marginMs = 5000): ExecutedFault[] {
  return faults.filter((f) => f.endAt >= from - marginMs && f.startAt <= to + marginMs);
}

/** A violation with the fault schedule around it, times relative to the run's start. */
export function formatViolation(v: Violation, faults: readonly ExecutedFault[], runStart: number): string {
  const rel = (t: number) => `t+${((t - runStart) / 1000).toFixed(1)}s`;
  const around = faultsAround(faults, v.from, v.to);
  const lines = [`VIOLATION ${v.invariant} ${v.id}: ${v.message} [${rel(v.from)} .. ${rel(v.to)}]`];
  for (const f of around.slice(0, 20))
    lines.push(`    fault #${f.n} ${f.kind} ${f.target} ${rel(f.startAt)} .. ${rel(f.endAt)} ${f.detail}`);
  if (around.length > 20) lines.push(`    ... ${around.length - 20} more faults in that window`);
  return lines.join("\n");
}
