/**
 * Smoke test of `npm run loadtest:steps` without running a step: its argument rules, and the
 * report's per-step rows picked from labelled results. The steps themselves take minutes and root,
 * so they run by hand (docs/reports/load-testing.md, "Build-up steps"), not in npm test.
 */
import { describe, expect, test } from "bun:test";
import type { MaxResult } from "../../../loadtest/max.ts";
import { UsageError } from "../../../loadtest/options.ts";
import { stepRows } from "../../../loadtest/report.ts";
import type { LoadResult } from "../../../loadtest/result.ts";
import { parseStepsOptions, STEPS } from "../../../loadtest/steps.ts";

describe("loadtest:steps arguments", () => {
  test("defaults: every step in build-up order, max on", () => {
    const options = parseStepsOptions([]);
    expect(options.steps).toEqual([...STEPS]);
    expect([options.duration, options.rate, options.stepSeconds, options.max]).toEqual([10, 1000, 5, true]);
  });
  test("a subset, --no-max and numbers", () => {
    const options = parseStepsOptions(["--steps", "redis-cluster,memory", "--no-max", "--rate", "500", "--duration", "3"]);
    expect(options.steps).toEqual(["redis-cluster", "memory"]);
    expect([options.max, options.rate, options.duration]).toEqual([false, 500, 3]);
  });
  test("unknown steps, unknown options, bad numbers and stray words are refused with a hint", () => {
    expect(() => parseStepsOptions(["--steps", "memory,sqlite"])).toThrow("unknown step 'sqlite'");
    expect(() => parseStepsOptions(["--steps"])).toThrow(UsageError);
    expect(() => parseStepsOptions(["--stpes", "memory"])).toThrow("Unknown option '--stpes'");
    expect(() => parseStepsOptions(["--rate", "0"])).toThrow("--rate must be a number");
    expect(() => parseStepsOptions(["--duration", "x"])).toThrow("--duration must be a number");
    expect(() => parseStepsOptions(["memory"])).toThrow("Unexpected argument 'memory'");
  });
});

test("the report takes the latest result per step and tool, in build-up order", () => {
  const run = (label: string, tool: string, rps: number) =>
    ({ schema: 1, kind: "run", label, tool, rps }) as unknown as LoadResult;
  const max = (label: string) => ({ schema: 1, kind: "max", label, tool: "turnoload" }) as unknown as MaxResult;
  const rows = stepRows([
    run("step=multi-host", "wrk", 1),
    run("step=memory", "wrk", 2),
    run("step=memory", "wrk", 3),
    run("store=memory", "wrk", 4),
    run("step=memory", "turnoload", 5),
    max("step=memory"),
  ]);
  expect(rows.map((r) => r.step)).toEqual(["memory", "multi-host"]);
  expect([rows[0]?.wrk?.rps, rows[0]?.turnoload?.rps, rows[0]?.max?.kind, rows[1]?.turnoload]).toEqual([3, 5, "max", undefined]);
});
