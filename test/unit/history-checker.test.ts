import { describe, expect, test } from "bun:test";
import { checkHistory, type HistoryEntry } from "../../harness/history-checker.ts";

const ok = (turno: number, sentAt: number, doneAt: number, id = "a"): HistoryEntry => ({
  id,
  sentAt,
  doneAt,
  status: 200,
  turno,
});

describe("history checker", () => {
  test("accepts a sequential and a concurrent clean history", () => {
    expect(checkHistory([ok(1, 0, 1), ok(2, 2, 3), ok(3, 4, 5)]).ok).toBe(true);
    // Overlapping requests may get numbers in any order.
    expect(checkHistory([ok(2, 0, 10), ok(1, 1, 9), ok(3, 11, 12)]).ok).toBe(true);
  });

  test("catches a duplicate (I1)", () => {
    const verdict = checkHistory([ok(1, 0, 1), ok(1, 2, 3)]);
    expect(verdict.ok).toBe(false);
    expect(verdict.totals.duplicates).toBe(1);
  });

  test("catches a number at or below the start value (I1 across runs)", () => {
    const verdict = checkHistory([ok(5, 0, 1), ok(6, 2, 3)], { before: new Map([["a", 5]]) });
    expect(verdict.ok).toBe(false);
    expect(verdict.problems.join()).toContain("at or below");
  });

  test("catches a gap without faults, allows it up to the failures with faults (I2)", () => {
    const history = [ok(1, 0, 1), { id: "a", sentAt: 2, doneAt: 3, status: 503 }, ok(3, 4, 5)];
    expect(checkHistory(history).totals.gaps).toBe(1);
    expect(checkHistory(history).ok).toBe(false);
    expect(checkHistory(history, { faults: true }).ok).toBe(true);
    expect(checkHistory([ok(1, 0, 1), ok(4, 2, 3)], { faults: true }).ok).toBe(false);
  });

  test("counts numbers past the last response as gaps when the final value is higher", () => {
    expect(checkHistory([ok(1, 0, 1)], { after: new Map([["a", 3]]) }).totals.gaps).toBe(2);
  });

  test("catches a real-time order violation (I3)", () => {
    const verdict = checkHistory([ok(2, 0, 1), ok(1, 2, 3)]);
    expect(verdict.ok).toBe(false);
    expect(verdict.totals.orderViolations).toBe(1);
  });

  test("catches out-of-range turnos (I4)", () => {
    expect(checkHistory([ok(0, 0, 1)]).totals.outOfRange).toBe(1);
    expect(checkHistory([ok(2 ** 53, 0, 1)]).totals.outOfRange).toBe(1);
    expect(checkHistory([ok(1.5, 0, 1)]).totals.outOfRange).toBe(1);
  });

  test("checks ids independently", () => {
    expect(checkHistory([ok(1, 0, 1, "a"), ok(1, 0, 1, "b"), ok(2, 2, 3, "a")]).ok).toBe(true);
  });
});
