import { describe, expect, test } from "bun:test";
import { checkHistory, type HistoryEntry } from "../../harness/history-checker.ts";

const ok = (turno: number, sentAt: number, doneAt: number, id = "a"): HistoryEntry => ({
  id,
  sentAt,
  doneAt,
  status: 200,
  turno,
});

/** A batch turn that got first..last (count = its size unless given). */
const range = (first: number, last: number, sentAt: number, doneAt: number, count = last - first + 1): HistoryEntry => ({
  id: "a",
  sentAt,
  doneAt,
  status: 200,
  first,
  last,
  count,
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

describe("history checker, batch turns (ranges)", () => {
  test("accepts ranges mixed with single turns, sequential and concurrent", () => {
    const sequential = checkHistory([range(1, 3, 0, 1), ok(4, 2, 3), range(5, 104, 4, 5), ok(105, 6, 7)]);
    expect(sequential.ok).toBe(true);
    expect(sequential.totals.numbers).toBe(105);
    expect(sequential.totals.issued).toBe(4);
    // Overlapping requests may get their numbers in any order.
    expect(checkHistory([range(3, 5, 0, 10), ok(1, 1, 9), ok(2, 2, 8), range(6, 6, 11, 12)]).ok).toBe(true);
  });

  test("catches an overlapping range (I1): one number shared by two ranges, or by a range and a turn", () => {
    const twoRanges = checkHistory([range(1, 5, 0, 1), range(5, 9, 2, 3)]);
    expect(twoRanges.ok).toBe(false);
    expect(twoRanges.totals.duplicates).toBe(1);
    const nested = checkHistory([range(1, 10, 0, 5), ok(4, 1, 2)]);
    expect(nested.ok).toBe(false);
    expect(nested.totals.duplicates).toBe(1);
    expect(checkHistory([range(1, 5, 0, 1)], { before: new Map([["a", 2]]) }).problems.join()).toContain("at or below");
  });

  test("catches a gap inside a sequence of ranges (I2), allowed only up to what failed batches asked for", () => {
    const history = [range(1, 3, 0, 1), range(6, 8, 2, 3)];
    expect(checkHistory(history).totals.gaps).toBe(2);
    expect(checkHistory(history).ok).toBe(false);
    const failedBatch: HistoryEntry = { id: "a", sentAt: 1, doneAt: 2, status: 503, count: 2 };
    expect(checkHistory([...history, failedBatch], { faults: true }).ok).toBe(true);
    const failedSingle: HistoryEntry = { id: "a", sentAt: 1, doneAt: 2, status: 503 };
    expect(checkHistory([...history, failedSingle], { faults: true }).ok).toBe(false);
  });

  test("catches a range of another size than asked for", () => {
    const verdict = checkHistory([range(1, 4, 0, 1, 5)]);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems.join()).toContain("size");
  });

  test("catches a range out of real-time order (I3), against a turn or another range", () => {
    // A range that completed before a later turn was sent, with higher numbers.
    const afterTurn = checkHistory([range(2, 4, 0, 1), ok(1, 2, 3)]);
    expect(afterTurn.ok).toBe(false);
    expect(afterTurn.totals.orderViolations).toBe(1);
    const twoRanges = checkHistory([range(11, 20, 0, 1), range(1, 10, 2, 3)]);
    expect(twoRanges.totals.orderViolations).toBe(1);
    // A turn that completed before a range was sent, with a number above the range's.
    expect(checkHistory([ok(7, 0, 1), range(5, 6, 2, 3)]).totals.orderViolations).toBe(1);
  });

  test("catches ranges outside [1, MAX_SAFE_INTEGER] or upside down (I4)", () => {
    expect(checkHistory([range(0, 2, 0, 1)]).totals.outOfRange).toBe(1);
    expect(checkHistory([range(2 ** 53 - 2, 2 ** 53, 0, 1)]).totals.outOfRange).toBe(1);
    expect(checkHistory([range(5, 4, 0, 1, 1)]).totals.outOfRange).toBe(1);
  });
});
