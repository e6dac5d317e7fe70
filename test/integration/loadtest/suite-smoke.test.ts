/**
 * Short runs of the whole suite against a real service (memory store): every tool with --verify,
 * loadtest:max with tiny steps, 5% hostile requests mixed into turnoload, the report renderer, and
 * the argument checks. Full-length runs are done by hand (docs/reports/load-testing.md).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chartSpecs, markdown, renderSvg } from "../../../loadtest/report.ts";
import { requireBinary } from "../../../harness/binaries.ts";
import { type ServiceProcess, startService } from "../../../harness/service.ts";
import { runCli } from "./run-cli.ts";

/** TURNOMATIC_FULL=1: 10 s per tool instead of 1 s. */
const SECONDS = process.env.TURNOMATIC_FULL === "1" ? "10" : "1";
let service: ServiceProcess;
beforeAll(async () => {
  service = await startService({ store: "memory:", env: { TURNOMATIC_ADMIN_TOKEN: "" } });
});
afterAll(async () => {
  await service?.stop();
});

interface RunResult {
  tool: string;
  rps: number;
  requests: number;
  latencyMs: { p50: number; p99: number; p999: number };
  verification: { ok: boolean; kind: string; counters: { sum: number } };
  machine: { cores: number; bun: string; kernel: string; cpuModel: string };
}

describe("every tool against a real service, verified", () => {
  // No --verify: verification is on by default.
  const common = ["--duration", SECONDS, "--connections", "4", "--label", "smoke"];
  const cases: [string, string[], string][] = [
    ["turnoload", ["--ids", "5", "--dist", "zipf", "--rate", "300"], "history"],
    ["wrk", ["--ids", "5", "--dist", "hot"], "turnos"],
    ["autocannon", ["--ids", "5", "--dist", "uniform"], "turnos"],
    ["hey", [], "counter-delta"],
    ["ab", [], "counter-delta"],
    ["httperf", ["--rate", "300"], "counter-delta"],
    ["turnomatic-client", ["--ids", "5", "--dist", "hot"], "history"],
  ];
  for (const [tool, args, kind] of cases) {
    test(tool, async () => {
      if (tool === "ab") requireBinary("ab", "apt-get install apache2-utils");
      else if (tool === "httperf") requireBinary("httperf", "apt-get install httperf");
      else if (tool !== "turnoload" && tool !== "autocannon" && tool !== "turnomatic-client") requireBinary(tool);
      const run = await runCli("cli.ts", ["--tool", tool, "--target", service.url, ...common, ...args]);
      expect(run.stderr).toContain("verification");
      expect(run.code).toBe(0);
      const result = run.result as unknown as RunResult;
      expect(result.tool).toBe(tool);
      expect(result.requests).toBeGreaterThan(0);
      expect(result.rps).toBeGreaterThan(0);
      expect(result.latencyMs.p99).toBeGreaterThanOrEqual(result.latencyMs.p50);
      expect(result.verification.kind).toBe(kind);
      expect(result.verification.ok).toBe(true);
      expect(result.verification.counters.sum).toBeGreaterThan(0);
      expect(result.machine.cores).toBeGreaterThan(0);
      expect(result.machine.bun).toBe(Bun.version);
    }, 60_000);
  }
});

test("turnoload with 5% hostile requests keeps I1-I4 for the good ones and gets only 4xx for the hostile", async () => {
  const run = await runCli("cli.ts", [
    ...["--tool", "turnoload", "--target", service.url, "--duration", "3", "--rate", "400", "--ids", "4"],
    ...["--connections", "8", "--hostile", "0.05", "--verify"],
  ]);
  expect(run.stderr).toContain("verification (history): OK");
  expect(run.code).toBe(0);
  const extra = run.result?.extra as { hostile: { sent: number; refused: number; wrong: number } };
  expect(extra.hostile.sent).toBeGreaterThan(20);
  expect(extra.hostile.wrong).toBe(0);
  expect(extra.hostile.refused).toBe(extra.hostile.sent);
}, 60_000);

test("loadtest:max probes with wrk, bisects, verifies every step and names a maximum with its ratio", async () => {
  requireBinary("wrk");
  const run = await runCli("max.ts", [
    ...["--target", service.url, "--probe-seconds", "1", "--step-seconds", "1", "--max-steps", "3"],
    ...["--ids", "3", "--slo-ms", "1000", "--max-lag-share", "1", "--connections", "16"],
  ]);
  expect(run.code).toBe(0);
  const lastLine = run.stderr.trim().split("\n").at(-1) ?? "";
  expect(lastLine).toMatch(/^max sustainable rate: \d+ req\/s .*wrk closed loop \d+ req\/s; ratio [\d.]+/);
  const result = run.result as {
    wrk: { rps: number };
    steps: { offered: number; verdict: string; schedulingErrorMs: { p99: number }; cpu: Record<string, number> }[];
    maxSustainableRate: number;
    ratioToWrk: number;
    verification: { ok: boolean };
  };
  expect(result.wrk.rps).toBeGreaterThan(0);
  // Bisection of [0, wrk]: the first step is at half of wrk's rate.
  expect(result.steps[0]?.offered).toBe(Math.round(result.wrk.rps / 2));
  expect(result.steps.length).toBeGreaterThanOrEqual(3);
  expect(result.maxSustainableRate).toBe(Math.max(0, ...result.steps.filter((s) => s.verdict === "ok").map((s) => s.offered)));
  expect(result.ratioToWrk).toBeCloseTo(result.maxSustainableRate / result.wrk.rps, 2);
  expect(result.verification.ok).toBe(true);
  for (const step of result.steps) expect(step.schedulingErrorMs.p99).toBeGreaterThanOrEqual(0);
  // The service's own process was found by its port and measured.
  expect(Object.keys(result.steps[0]?.cpu ?? {}).some((k) => k.startsWith("target (bun"))).toBe(true);
}, 120_000);

test("a step is invalid, not broken, when the generator's scheduling error is a large part of the SLO", async () => {
  const { judgeStep } = await import("../../../loadtest/max.ts");
  const p = (p99: number) => ({ p50: 0, p90: 0, p99, p999: 0, max: 0, mean: 0 });
  const o = { sloMs: 10, maxErrorRate: 0.001, maxLagShare: 0.25 };
  expect(judgeStep({ latencyMs: p(40), schedulingErrorMs: p(3), errorRate: 0 }, o).verdict).toBe("invalid");
  expect(judgeStep({ latencyMs: p(40), schedulingErrorMs: p(1), errorRate: 0 }, o).verdict).toBe("broken");
  expect(judgeStep({ latencyMs: p(4), schedulingErrorMs: p(1), errorRate: 0.01 }, o).verdict).toBe("broken");
  expect(judgeStep({ latencyMs: p(4), schedulingErrorMs: p(1), errorRate: 0 }, o).verdict).toBe("ok");
});

test("turnoload on several worker threads keeps one schedule and one time line (I3 judged across them)", async () => {
  const run = await runCli("cli.ts", [
    ...["--tool", "turnoload", "--target", service.url, "--duration", "2", "--rate", "2000", "--ids", "1"],
    ...["--connections", "16", "--workers", "2"],
  ]);
  expect(run.stderr).toContain("verification (history): OK");
  expect(run.code).toBe(0);
  const result = run.result as { requests: number; extra: { workers: number; schedulingErrorMs: { p50: number } } };
  expect(result.extra.workers).toBe(2);
  expect(result.requests).toBe(4000);
}, 60_000);

describe("arguments", () => {
  test("a non-loopback target is refused without --netns", async () => {
    const run = await runCli("cli.ts", ["--tool", "turnoload", "--target", "http://192.0.2.10:7017"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("refusing target 192.0.2.10");
  });
  test("unknown tools and options are named", async () => {
    const bad = await runCli("cli.ts", ["--tool", "siege", "--target", service.url]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--tool must be one of wrk, hey, ab, autocannon, turnoload, httperf, turnomatic-client");
    const unknown = await runCli("cli.ts", ["--tool", "wrk", "--target", service.url, "--rate", "5"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("wrk is closed-loop");
  });
});

test("the report renders SVG charts and a README from result files", async () => {
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-report-"));
  try {
    const run = await runCli("cli.ts", ["--tool", "turnoload", "--target", service.url, "--duration", "1", "--rate", "100"]);
    const result = run.result as Record<string, unknown>;
    writeFileSync(join(dir, "run.json"), JSON.stringify(result));
    const results = [result as never];
    const specs = chartSpecs(results);
    // An open-loop run alone: no closed-loop chart, no errors chart (nothing to show is not drawn).
    expect(Object.keys(specs)).toEqual([]);
    const wrkRun = await runCli("cli.ts", ["--tool", "wrk", "--target", service.url, "--duration", "1", "--connections", "4"]);
    const both = [result as never, wrkRun.result as never];
    const closed = chartSpecs(both);
    expect(Object.keys(closed)).toEqual(["closed-loop-throughput.svg"]);
    const svg = await renderSvg(closed["closed-loop-throughput.svg"] as never);
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("wrk");
    expect(svg).not.toContain("turnoload");
    const md = markdown(results, Object.keys(specs), dir, dir);
    expect(md).toContain("| turnoload |");
    expect(readdirSync(dir)).toContain("run.json");
    expect(readFileSync(join(dir, "run.json"), "utf8")).toContain('"kind":"run"');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
