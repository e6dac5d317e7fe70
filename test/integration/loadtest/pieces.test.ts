/** Unit tests of the load-test suite's pieces: argument rules, id distributions, percentiles, checks. */
import { describe, expect, test } from "bun:test";
import { createPicker } from "../../../loadtest/ids.ts";
import { checkTarget, parseLoadOptions, UsageError } from "../../../loadtest/options.ts";
import { percentiles } from "../../../loadtest/result.ts";
import { saturation } from "../../../loadtest/saturation.ts";
import { turnoOf } from "../../../loadtest/tools/turnoload.ts";
import { verifyCounterDelta, verifyTurnos } from "../../../loadtest/verify.ts";

describe("targets", () => {
  test("loopback forms are allowed", () => {
    for (const target of ["http://127.0.0.1:7017", "http://127.1.2.3:80", "http://localhost:7017", "http://[::1]:7017/"])
      expect(() => checkTarget(target, undefined)).not.toThrow();
  });
  test("anything else needs --netns", () => {
    for (const target of ["http://10.0.0.2:7017", "http://example.com", "http://128.0.0.1", "http://127.0.0.1.example.com"])
      expect(() => checkTarget(target, undefined)).toThrow(UsageError);
    expect(checkTarget("http://10.0.0.2:7017", "ns1")).toBe("http://10.0.0.2:7017");
  });
  test("paths, https and garbage are refused with a hint", () => {
    expect(() => checkTarget("http://127.0.0.1:7017/turno", undefined)).toThrow("without a path");
    expect(() => checkTarget("https://127.0.0.1", undefined)).toThrow("http://");
    expect(() => checkTarget("not a url", undefined)).toThrow("must be a URL");
  });
  test("hey and ab are pinned to one id; a contradicting --ids is refused", () => {
    const hey = parseLoadOptions(["--tool", "hey", "--target", "http://127.0.0.1:1"]);
    expect([hey.ids, hey.dist]).toEqual([1, "hot"]);
    expect(() => parseLoadOptions(["--tool", "ab", "--target", "http://127.0.0.1:1", "--ids", "5"])).toThrow("one URL only");
  });
  test("numbers are range-checked", () => {
    expect(() => parseLoadOptions(["--tool", "wrk", "--target", "http://127.0.0.1:1", "--duration", "0"])).toThrow("--duration");
    expect(() => parseLoadOptions(["--tool", "turnoload", "--target", "http://127.0.0.1:1", "--hostile", "0.9"])).toThrow(
      "--hostile",
    );
  });
});

describe("id distributions", () => {
  const draw = (dist: "hot" | "uniform" | "zipf") => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const pick = createPicker(dist, 100, random);
    const counts = new Array<number>(100).fill(0);
    for (let i = 0; i < 20_000; i++) {
      const k = pick();
      counts[k] = (counts[k] ?? 0) + 1;
    }
    return counts;
  };
  test("every draw is in range and each shape is as documented", () => {
    const hot = draw("hot");
    expect(hot[0] as number).toBeGreaterThan(17_000);
    const uniform = draw("uniform");
    expect(Math.min(...uniform)).toBeGreaterThan(120);
    expect(Math.max(...uniform)).toBeLessThan(300);
    const zipf = draw("zipf");
    expect(zipf[0] as number).toBeGreaterThan(zipf[9] as number);
    expect(zipf[9] as number).toBeGreaterThan(zipf[99] as number);
    for (const counts of [hot, uniform, zipf]) expect(counts.reduce((a, b) => a + b, 0)).toBe(20_000);
  });
});

test("percentiles are exact nearest-rank values", () => {
  const values = Array.from({ length: 1000 }, (_, i) => i + 1);
  expect(percentiles(values)).toEqual({ p50: 500, p90: 900, p99: 990, p999: 999, max: 1000, mean: 500.5 });
});

test("a 200 body must name the requested id and nothing else", () => {
  const prefix = '{"id":"a","turno":';
  expect(turnoOf('{"id":"a","turno":3}', prefix)).toBe(3);
  expect(turnoOf('{"id":"b","turno":3}', prefix)).toBeUndefined();
  expect(turnoOf('{"id":"a","turno":"3"}', prefix)).toBeUndefined();
  expect(turnoOf('{"id":"a","turno":3,"x":1}', prefix)).toBeUndefined();
  expect(turnoOf('{"id":"a","turno":-3}', prefix)).toBeUndefined();
  expect(turnoOf("not json", prefix)).toBeUndefined();
});

describe("verification without timings", () => {
  const before = new Map([["a", 0]]);
  test("duplicates are I1 whatever the allowance", () => {
    const v = verifyTurnos(
      [
        { id: "a", turno: 1 },
        { id: "a", turno: 1 },
      ],
      10,
      before,
      new Map([["a", 1]]),
    );
    expect(v.ok).toBe(false);
    expect(v.problems.join()).toContain("I1 a: 1 duplicate");
  });
  test("gaps up to the abandoned/failed allowance pass, more do not", () => {
    const turnos = [1, 2, 3].map((turno) => ({ id: "a", turno }));
    expect(verifyTurnos(turnos, 2, before, new Map([["a", 5]])).ok).toBe(true);
    expect(verifyTurnos(turnos, 1, before, new Map([["a", 5]])).ok).toBe(false);
  });
  test("counter delta: fewer moves than successes is a duplicate, more than allowed a skip", () => {
    expect(verifyCounterDelta("a", 100, 0, 0, 99, 32).problems.join()).toContain("I1");
    expect(verifyCounterDelta("a", 100, 0, 0, 132, 32).ok).toBe(true);
    expect(verifyCounterDelta("a", 100, 0, 0, 133, 32).problems.join()).toContain("I2");
  });
});

test("saturation names a full core, or says the host's other work filled it", () => {
  expect(saturation({ "target (bun x1)": 97, generator: 20, host: 70, hostCores: 2 })).toContain(
    "target (bun x1) at 97% of a core",
  );
  expect(saturation({ "target (bun x1)": 10, generator: 10, host: 95, hostCores: 2 })).toContain("other processes ~170%");
  expect(saturation({ "target (bun x1)": 10, generator: 10, host: 30, hostCores: 2 })).toContain("latency, not CPU");
});
