/**
 * The nemesis judge and schedule without a cluster: the same seed gives the same schedule, a clean
 * history passes, and every kind of violation injected into a history is reported (with the faults
 * around it): duplicates, a number at or below a segment's start, real-time order, a silent gap of a
 * client that never resends, an idempotent replay with another number, and both ledger bounds.
 */
import { describe, expect, test } from "bun:test";
import { type ExecutedFault, formatViolation, type JudgeInput, judge } from "../nemesis/judge.ts";
import { buildSchedule, FAULT_KINDS, parseFaults, resourcesOf } from "../nemesis/schedule.ts";
import type { AdminOp, ClientClass, Ledger, WorkloadEntry } from "../nemesis/workload.ts";

const T0 = 1_000_000;

/** n sequential successful requests on one id, numbers from `from`, 10 ms apart. */
function run(id: string, cls: ClientClass, from: number, n: number, at = T0): WorkloadEntry[] {
  return Array.from({ length: n }, (_, i) => ({
    id,
    cls,
    sentAt: at + i * 10,
    doneAt: at + i * 10 + 5,
    status: 200,
    turno: from + i,
  }));
}

function ledger(id: string, issued: number, delivered = issued): Ledger {
  return { id, issued, delivered, lost: issued - delivered };
}

function input(parts: Partial<JudgeInput> & { entries: WorkloadEntry[] }): JudgeInput {
  const ids = new Map<string, ClientClass>();
  for (const e of parts.entries) ids.set(e.id, e.cls);
  const actual: Record<string, number> = {};
  const ledgers: Record<string, Ledger> = {};
  for (const id of ids.keys()) {
    const seen = parts.entries.filter((e) => e.id === id && e.turno !== undefined).map((e) => e.turno as number);
    actual[id] = Math.max(0, ...seen);
    ledgers[id] = ledger(id, new Set(seen).size);
  }
  return {
    adminOps: [],
    recoveries: [],
    faults: [],
    ids,
    actual,
    ledgers,
    ledgerFlushMs: 1000,
    ...parts,
  };
}

describe("nemesis schedule", () => {
  test("the same seed gives the same schedule; another seed another one", () => {
    const options = { durationMs: 120_000, apps: 2, faults: [...FAULT_KINDS], store: "sentinel" as const };
    const a = buildSchedule({ ...options, seed: 42 });
    expect(buildSchedule({ ...options, seed: 42 })).toEqual(a);
    expect(buildSchedule({ ...options, seed: 43 })).not.toEqual(a);
    expect(a.length).toBeGreaterThan(10);
  });

  test("planned faults never hold a resource twice, and all end before the tail", () => {
    const durationMs = 600_000;
    const schedule = buildSchedule({ seed: 7, durationMs, apps: 3, faults: [...FAULT_KINDS], store: "sentinel" });
    for (const f of schedule) expect(f.atMs).toBeLessThan(durationMs - 12_000);
    for (const f of schedule.filter((x) => x.kind === "redis-empty")) expect(f.atMs).toBeLessThanOrEqual(durationMs * 0.6);
    const kinds = new Set(schedule.map((f) => f.kind));
    for (const kind of FAULT_KINDS) if (kind !== "admin") expect(kinds.has(kind)).toBe(true);
    expect(schedule.map((f) => f.atMs)).toEqual([...schedule.map((f) => f.atMs)].sort((x, y) => x - y));
    // Faults overlap in time, but two faults on one resource never do.
    let overlapping = 0;
    for (const [i, a] of schedule.entries()) {
      for (const b of schedule.slice(i + 1)) {
        if (b.atMs < a.atMs + a.durationMs) overlapping++;
        const shared = resourcesOf(a, 3).filter((r) => resourcesOf(b, 3).includes(r));
        if (shared.length > 0)
          expect({ a: a.n, b: b.n, apart: b.atMs >= a.atMs + a.durationMs }).toEqual({ a: a.n, b: b.n, apart: true });
      }
    }
    expect(overlapping).toBeGreaterThan(5);
    expect(resourcesOf({ kind: "rolling-restart", target: "all" }, 3)).toEqual(["proc:app1", "proc:app2", "proc:app3"]);
  });

  test("a Cluster run has empty restarts too; --faults is checked", () => {
    const kinds = buildSchedule({ seed: 7, durationMs: 600_000, apps: 2, faults: [...FAULT_KINDS], store: "cluster" }).map(
      (f) => f.kind,
    );
    expect(kinds).toContain("redis-empty");
    expect(parseFaults("app-kill, failover")).toEqual(["app-kill", "failover"]);
    expect(() => parseFaults("app-kill,meteor")).toThrow(/unknown fault 'meteor'/);
  });
});

describe("nemesis judge", () => {
  test("a clean history with resets, sets and a recovery passes", () => {
    const ops: AdminOp[] = [
      { id: "a", op: "reset", value: 0, sentAt: T0 + 1000, doneAt: T0 + 1001, failedAttempts: 0, quiesced: true },
      { id: "a", op: "set", value: 500, sentAt: T0 + 2000, doneAt: T0 + 2001, failedAttempts: 0, quiesced: true },
    ];
    const entries = [
      ...run("a", "admin", 1, 50),
      ...run("a", "admin", 1, 50, T0 + 1100),
      ...run("a", "admin", 501, 50, T0 + 2100),
      ...run("r", "raw", 1, 50),
      ...run("r", "raw", 1_000_000_001, 50, T0 + 5000),
    ];
    const base = input({ entries, adminOps: ops, recoveries: [{ lossAt: T0 + 3000, at: T0 + 4000, floor: 1_000_000_000 }] });
    // The ledger knows only the last life: r's 50 numbers above the floor; a's numbers since then (none).
    const verdict = judge({
      ...base,
      actual: { a: 550, r: 1_000_000_050 },
      ledgers: { a: ledger("a", 0), r: ledger("r", 50) },
    });
    expect(verdict.violations).toEqual([]);
    expect(verdict.ok).toBe(true);
    expect(verdict.segments).toBe(5);
  });

  test("a daily reset starts an epoch at 0, or above the floor in a recovered life; a repeat within the day is I1", () => {
    const daily = (id: string, at: number): AdminOp => ({
      id,
      op: "daily",
      value: 0,
      sentAt: at,
      doneAt: at + 1,
      failedAttempts: 0,
      quiesced: true,
      confirmed: true,
    });
    const recoveries = [{ lossAt: T0 + 3000, at: T0 + 4000, floor: 1_000_000_000 }];
    // d: reset at 1 before the recovery; f: after it, a counter not written since starts above the
    // floor; g: one written since starts at 1.
    const entries = [
      ...run("d", "admin", 1, 20),
      ...run("d", "admin", 1, 20, T0 + 2000),
      ...run("f", "admin", 1, 20),
      ...run("f", "admin", 1_000_000_001, 20, T0 + 6000),
      ...run("g", "admin", 1, 20),
      ...run("g", "admin", 1_000_000_001, 5, T0 + 4500),
      ...run("g", "admin", 1, 20, T0 + 6000),
    ];
    const ops = [daily("d", T0 + 1000), daily("f", T0 + 5000), daily("g", T0 + 5000)];
    const clean = judge(
      input({
        entries,
        adminOps: ops,
        recoveries,
        actual: { d: 20, f: 1_000_000_020, g: 20 },
        ledgers: { d: ledger("d", 0), f: ledger("f", 20), g: ledger("g", 25) },
      }),
    );
    expect(clean.violations).toEqual([]);
    // The same day handing out 5 again is a duplicate.
    const repeat = [...run("d", "admin", 1, 20), ...run("d", "admin", 1, 20, T0 + 2000), ...run("d", "admin", 5, 1, T0 + 2500)];
    const verdict = judge(input({ entries: repeat, adminOps: [daily("d", T0 + 1000)] }));
    expect(verdict.violations.map((v) => v.invariant)).toContain("I1");
  });

  test("a duplicate is reported under I1 with the faults around it", () => {
    const entries = run("r", "raw", 1, 20);
    entries.push({ id: "r", cls: "raw", sentAt: T0 + 500, doneAt: T0 + 505, status: 200, turno: 7 });
    const fault: ExecutedFault = { n: 3, kind: "redis-empty", target: "all", startAt: T0 + 300, endAt: T0 + 400, detail: "x" };
    const verdict = judge(input({ entries, faults: [fault] }));
    const v = verdict.violations.find((x) => x.invariant === "I1");
    expect(v?.message).toContain("1 duplicate");
    expect(formatViolation(v as NonNullable<typeof v>, [fault], T0)).toContain("fault #3 redis-empty");
    expect(verdict.ok).toBe(false);
  });

  test("a request answered above the floor before the run heard the recovery's answer is of the new life", () => {
    // The hosts issue from the floor once the recovery's marker is written: 1,000,000,001 completed
    // at T0 + 3800, before the recovery's answer (T0 + 4000) reached the run.
    const entries = [
      ...run("r", "raw", 1, 10),
      { id: "r", cls: "raw" as const, sentAt: T0 + 3700, doneAt: T0 + 3800, status: 200, turno: 1_000_000_001 },
      ...run("r", "raw", 1_000_000_002, 5, T0 + 5000),
    ];
    const recoveries = [{ lossAt: T0 + 3000, at: T0 + 4000, floor: 1_000_000_000 }];
    // The ledger knows the last life only: its 6 numbers.
    const verdict = judge(input({ entries, recoveries, ledgers: { r: ledger("r", 6) } }));
    expect(verdict.violations).toEqual([]);
  });

  test("a number at or below the recovery floor after the recovery is I1", () => {
    const entries = [...run("r", "raw", 1, 10), ...run("r", "raw", 11, 5, T0 + 5000)];
    const verdict = judge(input({ entries, recoveries: [{ lossAt: T0 + 3000, at: T0 + 4000, floor: 1_000_000_000 }] }));
    expect(verdict.violations.map((v) => v.invariant)).toContain("I1");
  });

  test("real-time order (I3) and a silent gap of a client that never resends (I2)", () => {
    const entries = run("r", "raw", 1, 10);
    // 20 sent after 10 completed, but 11..19 never seen by anyone and nothing failed.
    entries.push({ id: "r", cls: "raw", sentAt: T0 + 200, doneAt: T0 + 205, status: 200, turno: 20 });
    entries.push({ id: "o", cls: "raw", sentAt: T0, doneAt: T0 + 5, status: 200, turno: 2 });
    entries.push({ id: "o", cls: "raw", sentAt: T0 + 10, doneAt: T0 + 15, status: 200, turno: 1 });
    const verdict = judge(input({ entries }));
    const kinds = verdict.violations.map((v) => `${v.invariant} ${v.id}`);
    expect(kinds).toContain("I2 r");
    expect(kinds).toContain("I3 o");
  });

  test("the replaying class's silent gaps are left to the ledger, which must count them", () => {
    const entries = [...run("f", "fetch", 1, 5), ...run("f", "fetch", 8, 5, T0 + 100)];
    const clean = judge(input({ entries, ledgers: { f: ledger("f", 12, 10) } }));
    expect(clean.violations).toEqual([]);
    const undercount = judge(input({ entries, ledgers: { f: ledger("f", 12, 12) } }));
    expect(undercount.violations.map((v) => v.invariant)).toEqual(["ledger-lower"]);
  });

  test("the ledger's overcount must stay within the seen numbers near a report-dropping fault", () => {
    const entries = run("r", "raw", 1, 100);
    const kill: ExecutedFault = { n: 0, kind: "app-kill", target: "app1", startAt: T0 + 900, endAt: T0 + 950, detail: "" };
    // 30 seen numbers counted as lost: allowed when they completed near a kill, not otherwise.
    const over = { ledgers: { r: ledger("r", 100, 70) } };
    expect(judge(input({ entries, faults: [kill], ...over })).ok).toBe(true);
    const far: ExecutedFault = { ...kill, startAt: T0 + 60_000, endAt: T0 + 60_100 };
    expect(judge(input({ entries, faults: [far], ...over })).violations.map((v) => v.invariant)).toEqual(["ledger-upper"]);
  });

  test("a Cluster shard's loss wipes the ledgers of its slots only: the others count every life", async () => {
    const { default: calculateSlot } = await import("cluster-key-slot");
    const [a, b] = ["r", "s"];
    const slot = calculateSlot(a);
    expect(calculateSlot(b)).not.toBe(slot);
    // The lost shard served a's slot only; b's ledger kept its first life's 20 numbers.
    const everyId = { lossAt: T0 + 3000, at: T0 + 4000, floor: 1_000_000_000 };
    const recoveries = [{ ...everyId, slots: [[slot, slot]] as [number, number][] }];
    const entries = [
      ...run(a, "raw", 1, 20),
      ...run(a, "raw", 1_000_000_001, 10, T0 + 5000),
      ...run(b, "raw", 1, 20),
      ...run(b, "raw", 1_000_000_001, 10, T0 + 5000),
    ];
    const actual = { [a]: 1_000_000_010, [b]: 1_000_000_010 };
    const right = judge(input({ entries, recoveries, actual, ledgers: { [a]: ledger(a, 10), [b]: ledger(b, 30) } }));
    expect(right.violations).toEqual([]);
    // Judged as if b's ledger had been wiped too, its 20 older numbers would be an undercount.
    const wrong = judge(
      input({
        entries,
        recoveries: [everyId],
        actual,
        ledgers: { [a]: ledger(a, 10), [b]: ledger(b, 30) },
      }),
    );
    expect(wrong.violations.map((v) => `${v.invariant} ${v.id}`)).toEqual([`ledger-lower ${b}`]);
  });

  test("batch ranges: a range that overlaps another request's number is I1; the ledger counts every number of a range", () => {
    const entries: WorkloadEntry[] = [
      { id: "b", cls: "batch", sentAt: T0, doneAt: T0 + 5, status: 200, first: 1, last: 5, count: 5 },
      { id: "b", cls: "batch", sentAt: T0 + 10, doneAt: T0 + 15, status: 200, first: 6, last: 8, count: 3 },
    ];
    const clean = judge(input({ entries, actual: { b: 8 }, ledgers: { b: ledger("b", 8) } }));
    expect(clean.violations).toEqual([]);
    expect(clean.ledger[0]?.seen).toBe(8);
    entries.push({ id: "b", cls: "batch", sentAt: T0 + 20, doneAt: T0 + 25, status: 200, first: 7, last: 9, count: 3 });
    const bad = judge(input({ entries, actual: { b: 9 }, ledgers: { b: ledger("b", 9) } }));
    expect(bad.violations.map((v) => v.invariant)).toContain("I1");
  });

  test("an idempotent replay with another number is a violation unless the store lost its data in between", () => {
    const entries: WorkloadEntry[] = [
      { id: "k", cls: "keyed", key: "x", sentAt: T0, doneAt: T0 + 5, status: 200, turno: 1 },
      { id: "k", cls: "keyed", key: "x", sentAt: T0 + 10, doneAt: T0 + 15, status: 200, turno: 2 },
    ];
    const bad = judge(input({ entries }));
    expect(bad.violations.map((v) => v.invariant)).toEqual(["idempotency"]);
    // Same replay, same number: one request, no violation, one number seen.
    const good = judge(input({ entries: [entries[0] as WorkloadEntry, { ...(entries[1] as WorkloadEntry), turno: 1 }] }));
    expect(good.ok).toBe(true);
    expect(good.judged).toBe(1);
  });
});
