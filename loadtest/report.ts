/**
 * `npm run loadtest:report [-- --results DIR --out DIR]`: renders docs/load-testing/ (README.md and
 * SVG charts) from the result JSON files, with vega-lite specs rendered by vega's headless View
 * (no browser). Charts use the latest run per (tool, label); the tables list every run.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { MaxResult } from "./max.ts";
import type { LoadResult } from "./result.ts";
import { STEPS } from "./steps.ts";

type AnyResult = LoadResult | MaxResult;

export function loadResults(dir: string): AnyResult[] {
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".json"));
  } catch {
    return [];
  }
  return files
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as AnyResult)
    .filter((r) => r.schema === 1);
}

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  return await view.toSVG();
}

function latestRuns(runs: LoadResult[]): LoadResult[] {
  const latest = new Map<string, LoadResult>();
  for (const run of runs) latest.set(`${run.tool}|${run.label}`, run);
  return [...latest.values()];
}

const labelOf = (r: { label: string }) => (r.label === "" ? "(unlabelled)" : r.label);

/** The latest result of each build-up step (`npm run loadtest:steps`, labels `step=<name>`), in build-up order. */
export interface StepRow {
  readonly step: string;
  readonly turnoload: LoadResult | undefined;
  readonly wrk: LoadResult | undefined;
  readonly max: MaxResult | undefined;
}

export function stepRows(results: AnyResult[]): StepRow[] {
  const latest = (step: string, tool: string, kind: string) =>
    results.filter((r) => r.label === `step=${step}` && r.tool === tool && r.kind === kind).at(-1);
  return STEPS.map((step) => ({
    step,
    turnoload: latest(step, "turnoload", "run") as LoadResult | undefined,
    wrk: latest(step, "wrk", "run") as LoadResult | undefined,
    max: latest(step, "turnoload", "max") as MaxResult | undefined,
  })).filter((row) => row.turnoload !== undefined || row.wrk !== undefined || row.max !== undefined);
}

function stepSpecs(rows: StepRow[]): Record<string, TopLevelSpec> {
  if (rows.length === 0) return {};
  const order = rows.map((r) => r.step);
  const throughput = rows.flatMap((r) => [
    ...(r.wrk === undefined ? [] : [{ step: r.step, measure: "wrk closed loop (32 conns)", rps: r.wrk.rps }]),
    ...(r.max === undefined ? [] : [{ step: r.step, measure: "max sustainable (p99 <= SLO)", rps: r.max.maxSustainableRate }]),
  ]);
  const latency = rows.flatMap((r) =>
    r.turnoload === undefined
      ? []
      : (["p50", "p99"] as const).map((p) => ({
          step: r.step,
          percentile: p,
          ms: Math.max(0.01, r.turnoload?.latencyMs[p] ?? 0),
        })),
  );
  return {
    "steps-throughput.svg": {
      title: "Build-up steps: throughput (req/s, same settings at every step)",
      data: { values: throughput },
      mark: "bar",
      encoding: {
        x: { field: "step", type: "nominal", sort: order, title: null },
        xOffset: { field: "measure" },
        y: { field: "rps", type: "quantitative", title: "requests/s" },
        color: { field: "measure", type: "nominal", title: null, legend: { labelLimit: 300 } },
      },
      width: 480,
      height: 240,
    },
    "steps-latency.svg": {
      title: "Build-up steps: turnoload latency at a fixed open-loop rate (ms, log scale)",
      data: { values: latency },
      mark: "bar",
      encoding: {
        x: { field: "step", type: "nominal", sort: order, title: null },
        xOffset: { field: "percentile", sort: ["p50", "p99"] },
        y: { field: "ms", type: "quantitative", scale: { type: "log" }, title: "latency (ms)" },
        color: { field: "percentile", type: "nominal", sort: ["p50", "p99"] },
      },
      width: 480,
      height: 240,
    },
  };
}

/**
 * CPU of every watched server-side process (service, workers, HAProxy, Redis: not the generator)
 * per request, at the highest rate that held: what the setup costs, whatever the neighbours did.
 */
export function serverCpuPerRequestUs(m: MaxResult): number | undefined {
  const held = m.steps.filter((s) => s.ok && s.offered === m.maxSustainableRate).at(-1);
  if (held === undefined || held.achieved <= 0) return undefined;
  const percent = Object.entries(held.cpu)
    .filter(([name]) => !["generator", "host", "hostCores"].includes(name))
    .reduce((sum, [, v]) => sum + v, 0);
  return (percent / 100) * (1e6 / held.achieved);
}

function stepsMarkdown(rows: StepRow[]): string[] {
  if (rows.length === 0) return [];
  const first = rows.find((r) => r.turnoload !== undefined)?.turnoload;
  const verdict = (r: LoadResult | MaxResult | undefined) => {
    const v = r?.verification;
    if (v === undefined) return "-";
    return v.ok ? "OK" : `**VIOLATION**: ${v.summary}`;
  };
  const lines = [
    "## Build-up steps (`npm run loadtest:steps`)",
    "",
    "The same load at every step of the build-up: turnoload open loop at a fixed rate" +
      (first === undefined
        ? ""
        : ` (${first.settings.rate} req/s, ${first.settings.connections} in flight, ${first.settings.ids} ids, ${first.settings.duration} s)`) +
      ", wrk closed loop (32 connections, 100 ids), and `loadtest:max`; everything verified against I1-I4.",
    "",
    "| step | turnoload req/s | p50 ms | p99 ms | errors / non-2xx | verdict | wrk req/s | wrk p50 / p99 ms | wrk errors / non-2xx | wrk verdict | max sustainable req/s (knee) | max: what saturated | server CPU per request there | max verdict |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  const cpuCost = (m: MaxResult | undefined) => {
    const us = m === undefined ? undefined : serverCpuPerRequestUs(m);
    return us === undefined ? "-" : `${Math.round(us)} µs`;
  };
  for (const { step, turnoload: t, wrk: w, max: m } of rows)
    lines.push(
      `| ${step} | ${t === undefined ? "-" : fmt(t.rps)} | ${t === undefined ? "-" : fmt(t.latencyMs.p50)} | ${t === undefined ? "-" : fmt(t.latencyMs.p99)} | ${t === undefined ? "-" : `${t.errors} / ${t.non2xx}`} | ${verdict(t)} | ${w === undefined ? "-" : `**${fmt(w.rps)}**`} | ${w === undefined ? "-" : `${fmt(w.latencyMs.p50)} / ${fmt(w.latencyMs.p99)}`} | ${w === undefined ? "-" : `${w.errors} / ${w.non2xx}`} | ${verdict(w)} | ${m === undefined ? "-" : `**${m.maxSustainableRate}** (${m.knee ?? "not reached"})`} | ${m?.saturated ?? "-"} | ${cpuCost(m)} | ${verdict(m)} |`,
    );
  lines.push("", "![steps-throughput.svg](steps-throughput.svg)", "", "![steps-latency.svg](steps-latency.svg)", "");
  return lines;
}

export function chartSpecs(results: AnyResult[]): Record<string, TopLevelSpec> {
  const runs = latestRuns(results.filter((r): r is LoadResult => r.kind === "run"));
  const maxes = results.filter((r): r is MaxResult => r.kind === "max");
  const specs: Record<string, TopLevelSpec> = { ...stepSpecs(stepRows(results)) };
  if (runs.length > 0) {
    specs["throughput.svg"] = {
      title: "Throughput per tool (req/s, higher is better)",
      data: { values: runs.map((r) => ({ tool: r.tool, label: labelOf(r), rps: r.rps })) },
      mark: "bar",
      encoding: {
        x: { field: "tool", type: "nominal", title: null },
        xOffset: { field: "label" },
        y: { field: "rps", type: "quantitative", title: "requests/s" },
        color: { field: "label", type: "nominal", title: "store / setup" },
        tooltip: [{ field: "rps" }],
      },
      width: 420,
      height: 240,
    };
    specs["latency.svg"] = {
      title: "Latency percentiles per tool (ms, log scale)",
      data: {
        values: runs.flatMap((r) =>
          (["p50", "p90", "p99", "p999"] as const).map((p) => ({
            tool: r.tool,
            label: labelOf(r),
            percentile: p === "p999" ? "p99.9" : p,
            ms: Math.max(0.01, r.latencyMs[p]),
          })),
        ),
      },
      mark: { type: "point", filled: true, size: 60 },
      encoding: {
        x: { field: "tool", type: "nominal", title: null },
        y: { field: "ms", type: "quantitative", scale: { type: "log" }, title: "latency (ms)" },
        color: { field: "percentile", type: "nominal", sort: ["p50", "p90", "p99", "p99.9"] },
        column: { field: "label", type: "nominal", title: null },
      },
      width: 200,
      height: 220,
    };
    specs["errors.svg"] = {
      title: "Errors and non-2xx responses per run",
      data: {
        values: runs.flatMap((r) => [
          { tool: r.tool, label: labelOf(r), kind: "transport errors", count: r.errors },
          { tool: r.tool, label: labelOf(r), kind: "non-2xx", count: r.non2xx },
        ]),
      },
      mark: "bar",
      encoding: {
        x: { field: "tool", type: "nominal", title: null },
        xOffset: { field: "kind" },
        y: { field: "count", type: "quantitative", title: "responses" },
        color: { field: "kind", type: "nominal" },
        column: { field: "label", type: "nominal", title: null },
      },
      width: 200,
      height: 200,
    };
  }
  if (maxes.length > 0) {
    const points = maxes.flatMap((m) =>
      m.steps.flatMap((s) =>
        (["p50", "p99", "p999"] as const).map((p) => ({
          label: labelOf(m),
          offered: s.offered,
          percentile: p === "p999" ? "p99.9" : p,
          ms: Math.max(0.01, s.latencyMs[p]),
        })),
      ),
    );
    specs["latency-vs-load.svg"] = {
      title: "Latency vs offered load (turnoload open loop, from intended send time)",
      data: { values: points },
      mark: { type: "line", point: true },
      encoding: {
        x: { field: "offered", type: "quantitative", title: "offered rate (req/s)" },
        y: { field: "ms", type: "quantitative", scale: { type: "log" }, title: "latency (ms)" },
        color: { field: "percentile", type: "nominal", sort: ["p50", "p99", "p99.9"] },
        column: { field: "label", type: "nominal", title: null },
      },
      width: 240,
      height: 220,
    };
    specs["achieved-vs-offered.svg"] = {
      title: "Achieved vs offered rate and error rate per step",
      data: {
        values: maxes.flatMap((m) =>
          m.steps.map((s) => ({ label: labelOf(m), offered: s.offered, achieved: s.achieved, errorPercent: s.errorRate * 100 })),
        ),
      },
      mark: { type: "line", point: true },
      encoding: {
        x: { field: "offered", type: "quantitative", title: "offered rate (req/s)" },
        y: { field: "achieved", type: "quantitative", title: "achieved rate (req/s)" },
        color: { field: "label", type: "nominal", title: "store / setup" },
        tooltip: [{ field: "errorPercent", title: "errors %" }],
      },
      width: 360,
      height: 240,
    };
  }
  return specs;
}

/**
 * CPU time the target spent per request (µs), from a step's CPU% of the target's processes and its
 * achieved rate: unlike latency, this barely moves when other work on the host steals the cores,
 * so 1e6 / it estimates what one core of the service could carry.
 */
export function targetCpuPerRequestUs(step: MaxResult["steps"][number]): number | undefined {
  const entry = Object.entries(step.cpu).find(([name]) => name.startsWith("target"));
  if (entry === undefined || step.achieved <= 0) return undefined;
  return (entry[1] / 100) * (1e6 / step.achieved);
}

function capacityEstimate(m: MaxResult): string {
  const costs = m.steps
    .filter((s) => s.achieved >= 200)
    .map(targetCpuPerRequestUs)
    .filter((v): v is number => v !== undefined)
    .sort((a, b) => a - b);
  const median = costs[Math.floor(costs.length / 2)];
  if (median === undefined) return "-";
  return `${Math.round(median)} µs CPU/request -> ~${Math.round(1e6 / median / 100) * 100} req/s per core`;
}

const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1));

export function markdown(results: AnyResult[], charts: string[], resultsDir: string, outDir: string): string {
  const runs = results.filter((r): r is LoadResult => r.kind === "run");
  const maxes = results.filter((r): r is MaxResult => r.kind === "max");
  const machine = results.at(-1)?.machine;
  const lines = [
    "# Load-test results",
    "",
    "Generated by `npm run loadtest:report` from `loadtest/results/*.json`; do not edit by hand.",
    "How to run the suite and how to read these figures: [../load-testing.md](../load-testing.md).",
    "",
    machine === undefined
      ? "No results yet."
      : `Machine: ${machine.cpuModel}, ${machine.cores} cores, kernel ${machine.kernel}, Bun ${machine.bun}. ` +
        "Load generator and service share this host, so every figure is a lower bound for the service alone.",
    "",
    ...stepsMarkdown(stepRows(results)),
  ];
  if (maxes.length > 0) {
    lines.push("## Maximum sustainable rate (`npm run loadtest:max`)", "");
    lines.push(
      "| setup | max sustainable req/s | knee req/s | SLO | what saturated | service CPU cost (median over steps) | I1-I4 over all steps |",
      "|---|---|---|---|---|---|---|",
    );
    for (const m of maxes)
      lines.push(
        `| ${labelOf(m)} | **${m.maxSustainableRate}** | ${m.knee ?? "not reached"} | p99 <= ${m.settings.sloMs} ms, errors <= ${Number(m.settings.maxErrorRate) * 100}% | ${m.saturated} | ${capacityEstimate(m)} | ${m.verification.summary} |`,
      );
    lines.push("");
    for (const m of maxes) {
      lines.push(`Steps for ${labelOf(m)} (${m.startedAt}):`, "");
      lines.push(
        "| offered | achieved | p50 ms | p99 ms | p99.9 ms | errors | verdict | CPU % |",
        "|---|---|---|---|---|---|---|---|",
      );
      for (const s of m.steps)
        lines.push(
          `| ${s.offered} | ${fmt(s.achieved)} | ${fmt(s.latencyMs.p50)} | ${fmt(s.latencyMs.p99)} | ${fmt(s.latencyMs.p999)} | ${s.errors} | ${s.ok ? "ok" : s.why} | ${Object.entries(
            s.cpu,
          )
            .filter(([k]) => k !== "hostCores")
            .map(([k, v]) => `${k} ${v}`)
            .join(", ")} |`,
        );
      lines.push("");
    }
  }
  if (runs.length > 0) {
    lines.push("## Runs per tool (`npm run loadtest`)", "");
    lines.push(
      "| tool | setup | dist / ids | conns | rate | req/s | p50 | p90 | p99 | p99.9 ms | errors | non-2xx | verification |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const r of runs) {
      const s = r.settings;
      lines.push(
        `| ${r.tool} | ${labelOf(r)} | ${s.dist} / ${s.ids} | ${s.connections} | ${s.rate ?? "max"} | **${fmt(r.rps)}** | ${fmt(r.latencyMs.p50)} | ${fmt(r.latencyMs.p90)} | ${fmt(r.latencyMs.p99)} | ${fmt(r.latencyMs.p999)} | ${r.errors} | ${r.non2xx} | ${r.verification === undefined ? "-" : `${r.verification.kind}: ${r.verification.summary}`} |`,
      );
    }
    lines.push("", "Notes per tool (from the latest run of each):", "");
    const seen = new Set<string>();
    for (const r of [...runs].reverse()) {
      if (seen.has(r.tool)) continue;
      seen.add(r.tool);
      lines.push(
        `- **${r.tool}**: ${r.notes.join("; ")}${r.settings.command === undefined ? "" : ` (\`${r.settings.command}\`)`}`,
      );
    }
    lines.push("");
  }
  if (charts.length > 0) {
    lines.push("## Charts", "");
    for (const chart of charts.filter((c) => !c.startsWith("steps-"))) lines.push(`![${chart}](${chart})`, "");
  }
  lines.push(`Source data: ${relative(outDir, resultsDir)}/ (${results.length} files).`, "");
  return lines.join("\n");
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const arg = (name: string, fallback: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && args[i + 1] !== undefined ? (args[i + 1] as string) : fallback;
  };
  const resultsDir = arg("results", join(import.meta.dir, "results"));
  const outDir = arg("out", join(import.meta.dir, "../docs/load-testing"));
  const results = loadResults(resultsDir);
  mkdirSync(outDir, { recursive: true });
  const specs = chartSpecs(results);
  const charts: string[] = [];
  for (const [file, spec] of Object.entries(specs)) {
    writeFileSync(join(outDir, file), await renderSvg(spec));
    charts.push(file);
  }
  const readme = join(outDir, "README.md");
  writeFileSync(readme, markdown(results, charts, resultsDir, outDir));
  // Formatted as the repository's format check wants it, so a fresh report never fails CI.
  const biome = join(import.meta.dir, "../node_modules/.bin/biome");
  if (await Bun.file(biome).exists()) Bun.spawnSync([biome, "format", "--write", readme], { stdout: "ignore", stderr: "ignore" });
  process.stderr.write(`rendered ${charts.length} charts from ${results.length} results\n`);
  console.log(readme);
}

if (import.meta.main) await main();
