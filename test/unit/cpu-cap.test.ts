import { describe, expect, test } from "bun:test";
import { quotaFor } from "../../bench/cpu-cap.ts";

describe("bench CPU cap: cgroup period and quota for a share of one core", () => {
  test("a 10 ms period while the quota stays at least 1 ms (the kernel's minimum)", () => {
    expect(quotaFor(0.5)).toEqual({ periodUs: 10_000, quotaUs: 5000 });
    expect(quotaFor(0.1)).toEqual({ periodUs: 10_000, quotaUs: 1000 });
  });
  test("smaller shares stretch the period instead of going under 1 ms", () => {
    expect(quotaFor(0.05)).toEqual({ periodUs: 20_000, quotaUs: 1000 });
    expect(quotaFor(0.03)).toEqual({ periodUs: 33_334, quotaUs: 1000 });
  });
  test("shares outside (0, 64] are refused", () => {
    for (const share of [0, -0.1, Number.NaN, 65]) expect(() => quotaFor(share)).toThrow(RangeError);
  });
});
