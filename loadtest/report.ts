/**
 * `npm run loadtest:report [-- --results DIR --out DIR]`: renders docs/reports/load-testing/ (README.md and
 * SVG charts) from the result JSON files, with vega-lite specs rendered by vega's headless View
 * (no browser). Tables use the latest result per (tool, label) and every loadtest:max step.
 *
 * Chart rules (each one answers one question): open-loop rates and closed-loop throughput never
 * share an axis; one colour per series from a scheme with enough colours; legends never cut; at
 * most ~560 px wide; log scales only over values > 0; a chart with nothing to show is not drawn.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { runCommand } from "../bench/toolkit/cli.ts";
import type { MaxResult, MaxSearch, MaxStep } from "./max.ts";
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

function latestBy<T extends { tool: string; label: string }>(items: T[]): T[] {
  const latest = new Map<string, T>();
  for (const item of items) latest.set(`${item.tool}|${item.label}`, item);
  return [...latest.values()];
}

const labelOf = (r: { label: string }) => (r.label === "" ? "(unlabelled)" : r.label);
const CLOSED_LOOP = new Set(["wrk", "hey", "ab", "autocannon"]);
const WIDTH = 440;

/** A colour scale with one distinct colour per series (category10 up to 10, category20 beyond). */
const colour = (field: string, title: string | null, count: number) => ({
  field,
  type: "nominal" as const,
  title,
  scale: { scheme: count <= 10 ? "category10" : "category20" },
  legend: { orient: "bottom" as const, direction: "vertical" as const, labelLimit: 0, titleLimit: 0 },
});

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

/** Every search to chart: each loadtest:max result, and its calibration against the bare server. */
function searches(maxes: MaxResult[]): { name: string; search: MaxSearch; slo: number; lagShare: number }[] {
  const out: { name: string; search: MaxSearch; slo: number; lagShare: number }[] = [];
  for (const m of latestBy(maxes)) {
    const slo = Number(m.settings.sloMs);
    const lagShare = Number(m.settings.maxLagShare ?? 0.25);
    if (m.calibration !== undefined) out.push({ name: "bare Bun.serve (calibration)", search: m.calibration, slo, lagShare });
    out.push({ name: labelOf(m), search: m, slo, lagShare });
  }
  return out;
}

/** A title line and a smaller second line, neither cut. */
const heading = (text: string, subtitle?: string) => ({
  text,
  ...(subtitle === undefined ? {} : { subtitle }),
  limit: 0,
  subtitleLimit: 0,
});

function bars(title: string, values: { name: string; value: number }[], axis: string, subtitle?: string): TopLevelSpec {
  return {
    title: heading(title, subtitle),
    data: { values },
    mark: { type: "bar", color: "#4c78a8" },
    encoding: {
      y: { field: "name", type: "nominal", title: null, sort: null, axis: { labelLimit: 0 } },
      x: { field: "value", type: "quantitative", title: axis },
    },
    width: WIDTH,
    height: { step: 22 },
  } as TopLevelSpec;
}

interface GroupedBarsSpec {
  readonly values: ReadonlyArray<Record<string, string | number>>;
  /** One row per value of `field`, in `sort` order when given; `fullLabels` never cuts a row's label. */
  readonly y: { readonly field: string; readonly sort?: readonly string[]; readonly fullLabels?: boolean };
  /** One bar per value of `field` in each row, a colour each; `title` names the legend (null: none). */
  readonly group: {
    readonly field: string;
    readonly sort?: readonly string[];
    readonly title: string | null;
    readonly count: number;
  };
  readonly x: { readonly field: string; readonly title: string };
  /** Height of one bar (px). */
  readonly step: number;
}

/** Horizontal bars grouped by row, as `bars` but with several bars (groups) per row. */
function groupedBars(title: ReturnType<typeof heading>, spec: GroupedBarsSpec): TopLevelSpec {
  const { y, group, x } = spec;
  return {
    title,
    data: { values: spec.values },
    mark: "bar",
    encoding: {
      y: {
        field: y.field,
        type: "nominal",
        title: null,
        ...(y.sort === undefined ? {} : { sort: y.sort }),
        ...(y.fullLabels === true ? { axis: { labelLimit: 0 } } : {}),
      },
      yOffset: { field: group.field, ...(group.sort === undefined ? {} : { sort: group.sort }) },
      x: { field: x.field, type: "quantitative", title: x.title },
      color: colour(group.field, group.title, group.count),
    },
    width: WIDTH,
    height: { step: spec.step },
  } as TopLevelSpec;
}

function stepSpecs(rows: StepRow[]): Record<string, TopLevelSpec> {
  const specs: Record<string, TopLevelSpec> = {};
  const wrk = rows.filter((r) => r.wrk !== undefined).map((r) => ({ name: r.step, value: r.wrk?.rps ?? 0 }));
  const max = rows.filter((r) => r.max !== undefined).map((r) => ({ name: r.step, value: r.max?.maxSustainableRate ?? 0 }));
  if (max.length > 0)
    specs["steps-max.svg"] = bars(
      "Build-up steps: maximum sustainable rate",
      max,
      "requests/s",
      "open loop (turnoload), p99 <= SLO",
    );
  if (wrk.length > 0)
    specs["steps-closed-loop.svg"] = bars(
      "Build-up steps: closed-loop throughput",
      wrk,
      "requests/s",
      "wrk, 32 connections, 100 ids",
    );
  const latency = rows.flatMap((r) =>
    r.turnoload === undefined
      ? []
      : (["p50", "p99"] as const).map((p) => ({ step: r.step, percentile: p, ms: r.turnoload?.latencyMs[p] ?? 0 })),
  );
  if (latency.length > 0)
    specs["steps-latency.svg"] = groupedBars(
      heading("Build-up steps: latency at a fixed rate", "turnoload open loop, from intended send times"),
      {
        values: latency,
        y: { field: "step", sort: rows.map((r) => r.step) },
        group: { field: "percentile", sort: ["p50", "p99"], title: null, count: 2 },
        x: { field: "ms", title: "latency from intended send time (ms)" },
        step: 14,
      },
    );
  return specs;
}

export function chartSpecs(results: AnyResult[]): Record<string, TopLevelSpec> {
  const runs = latestBy(results.filter((r): r is LoadResult => r.kind === "run"));
  const maxes = results.filter((r): r is MaxResult => r.kind === "max" && Array.isArray(r.steps) && "wrk" in r);
  const specs: Record<string, TopLevelSpec> = { ...stepSpecs(stepRows(results)) };
  const all = searches(maxes.filter((m) => !m.label.startsWith("step=")));
  if (all.length > 0) {
    specs["max-sustainable.svg"] = bars(
      "Maximum sustainable rate per setup",
      all.map((s) => ({ name: s.name, value: s.search.maxSustainableRate })),
      "requests/s",
      "open loop (loadtest:max), p99 <= SLO",
    );
    const points = all.flatMap((s) =>
      s.search.steps.map((step: MaxStep) => ({
        setup: s.name,
        offered: step.offered,
        p99: Math.max(0.01, step.latencyMs.p99),
        lag: Math.max(0.01, step.schedulingErrorMs.p99),
        verdict: step.verdict,
      })),
    );
    const slo = all[0]?.slo ?? 10;
    const lagLimit = (all[0]?.lagShare ?? 0.25) * slo;
    const lineChart = (
      title: string,
      subtitle: string,
      field: "p99" | "lag",
      axis: string,
      limit: number,
      limitLabel: string,
    ): TopLevelSpec =>
      ({
        title: heading(title, subtitle),
        width: WIDTH,
        height: 260,
        layer: [
          {
            data: { values: points },
            mark: { type: "point", filled: true, size: 50 },
            encoding: {
              x: { field: "offered", type: "quantitative", title: "offered open-loop rate (req/s)" },
              y: { field, type: "quantitative", scale: { type: "log" }, title: axis },
              color: colour("setup", null, all.length),
              shape: {
                field: "verdict",
                type: "nominal",
                title: "step",
                scale: { domain: ["ok", "broken", "invalid"], range: ["circle", "cross", "triangle-up"] },
                legend: { orient: "bottom", direction: "vertical" },
              },
            },
          },
          {
            data: { values: [{ limit, label: limitLabel }] },
            mark: { type: "rule", strokeDash: [4, 4], color: "#444" },
            encoding: { y: { field: "limit", type: "quantitative" } },
          },
          {
            data: { values: [{ limit, label: limitLabel }] },
            mark: { type: "text", align: "left", dx: 4, dy: -6, color: "#444", x: 0 },
            encoding: { y: { field: "limit", type: "quantitative" }, text: { field: "label" } },
          },
        ],
      }) as TopLevelSpec;
    specs["latency-vs-load.svg"] = lineChart(
      "Where p99 crosses the SLO",
      "p99 from intended send times, every loadtest:max step",
      "p99",
      "p99 latency (ms, log scale)",
      slo,
      `SLO ${slo} ms`,
    );
    specs["scheduling-error.svg"] = lineChart(
      "Was the generator on time?",
      "its scheduling error (p99), every loadtest:max step",
      "lag",
      "scheduling error p99 (ms, log scale)",
      lagLimit,
      `step invalid above ${lagLimit} ms`,
    );
  }
  const closed = runs.filter((r) => CLOSED_LOOP.has(r.tool) && !r.label.startsWith("step="));
  if (closed.length > 0) {
    const setups = new Set(closed.map(labelOf));
    specs["closed-loop-throughput.svg"] = groupedBars(
      heading("Closed-loop throughput per tool", "not comparable with the open-loop rates above"),
      {
        values: closed.map((r) => ({ tool: r.tool, setup: labelOf(r), rps: r.rps })),
        y: { field: "tool" },
        group: { field: "setup", title: "setup", count: setups.size },
        x: { field: "rps", title: "requests/s" },
        step: 12,
      },
    );
  }
  const withErrors = runs.filter((r) => r.errors + r.non2xx > 0);
  if (withErrors.length > 0)
    specs["errors.svg"] = groupedBars(heading("Runs with transport errors or non-2xx responses"), {
      values: withErrors.flatMap((r) => [
        { run: `${r.tool} ${labelOf(r)}`, kind: "transport errors", count: r.errors },
        { run: `${r.tool} ${labelOf(r)}`, kind: "non-2xx", count: r.non2xx },
      ]),
      y: { field: "run", fullLabels: true },
      group: { field: "kind", title: null, count: 2 },
      x: { field: "count", title: "responses" },
      step: 12,
    });
  return specs;
}

const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1));

function verdictOf(r: LoadResult | MaxResult | undefined): string {
  const v = r?.verification;
  if (v === undefined) return "-";
  return v.ok ? "OK" : `**VIOLATION**: ${v.summary}`;
}

function stepsMarkdown(rows: StepRow[]): string[] {
  if (rows.length === 0) return [];
  const lines = [
    "## Build-up steps (`npm run loadtest:steps`)",
    "",
    "| step | turnoload @ fixed rate: p50 / p99 ms | verdict | wrk req/s (p99 ms) | wrk verdict | max sustainable req/s (ratio to its wrk probe) | CPU µs per request at the max (by process) | max verdict |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const { step, turnoload: t, wrk: w, max: m } of rows)
    lines.push(
      `| ${step} | ${t === undefined ? "-" : `${fmt(t.latencyMs.p50)} / ${fmt(t.latencyMs.p99)} @ ${t.settings.rate}`} | ${verdictOf(t)} | ${w === undefined ? "-" : `${fmt(w.rps)} (${fmt(w.latencyMs.p99)})`} | ${verdictOf(w)} | ${m === undefined ? "-" : `**${m.maxSustainableRate}** (${m.ratioToWrk})`} | ${m === undefined ? "-" : cpuBreakdown(m)} | ${verdictOf(m)} |`,
    );
  lines.push("");
  return lines;
}

/** CPU µs per request of each server-side group at the highest rate that held, e.g. "target 23.4 + redis 6.2". */
export function cpuBreakdown(s: MaxSearch): string {
  const held = s.steps.filter((st) => st.verdict === "ok" && st.offered === s.maxSustainableRate).at(-1);
  if (held === undefined || held.achieved <= 0) return "-";
  const parts = Object.entries(held.cpu)
    .filter(([name]) => !["generator", "host", "hostCores"].includes(name))
    .map(
      ([name, percent]) =>
        `${name.replace(/ \(.*\)$/, "")} ${fmt(Math.round((percent / 100) * (1e6 / held.achieved) * 10) / 10)}`,
    );
  return parts.length === 0 ? "-" : `${parts.join(" + ")} µs`;
}

function searchRow(name: string, s: MaxSearch, slo: number): string {
  return `| ${name} | **${s.maxSustainableRate}** | ${s.wrk.rps} | **${s.ratioToWrk}** | ${s.knee ?? "not reached"} | ${s.generatorBound ? "yes" : "no"} | p99 <= ${slo} ms | ${cpuBreakdown(s)} | ${s.saturated} | ${s.verification.summary} | ${s.seconds} s |`;
}

function stepTable(name: string, s: MaxSearch): string[] {
  const lines = [
    `Steps for ${name}:`,
    "",
    "| offered | achieved | workers | p50 ms | p99 ms | service p99 ms | scheduling error p99 ms | send delay p99 ms | errors | verdict | CPU % |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const st of s.steps)
    lines.push(
      `| ${st.offered} | ${fmt(st.achieved)} | ${st.workers} | ${fmt(st.latencyMs.p50)} | ${fmt(st.latencyMs.p99)} | ${fmt(st.serviceMs.p99)} | ${fmt(st.schedulingErrorMs.p99)} | ${st.sendDelayMs === undefined ? "-" : fmt(st.sendDelayMs.p99)} | ${st.errors} | ${st.verdict === "ok" ? "ok" : `${st.verdict}: ${st.why}`} | ${Object.entries(
        st.cpu,
      )
        .filter(([k]) => k !== "hostCores")
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")} |`,
    );
  lines.push("");
  return lines;
}

export function markdown(results: AnyResult[], charts: string[], resultsDir: string, outDir: string): string {
  const runs = latestBy(results.filter((r): r is LoadResult => r.kind === "run"));
  const maxes = latestBy(results.filter((r): r is MaxResult => r.kind === "max" && "wrk" in r && !r.label.startsWith("step=")));
  const machine = results.at(-1)?.machine;
  const first = results[0]?.startedAt;
  const last = results.at(-1)?.startedAt;
  const lines = [
    "# Load-test results",
    "",
    "Generated by `npm run loadtest:report` from `loadtest/results/*.json`; do not edit by hand.",
    "How to run the suite and how to read these figures: [../load-testing.md](../load-testing.md).",
    "",
    machine === undefined
      ? "No results yet."
      : `Machine: ${machine.cpuModel}, ${machine.cores} cores, kernel ${machine.kernel}, Bun ${machine.bun}; results from ${first} to ${last}` +
        (machine.loadAverage === undefined ? "" : `, load average at the end ${machine.loadAverage}`) +
        ". Load generator and service share this host (and it was shared with other work), so every figure is a lower bound for the service alone.",
    "",
    ...stepsMarkdown(stepRows(results)),
  ];
  if (maxes.length > 0) {
    lines.push("## Maximum sustainable rate (`npm run loadtest:max`)", "");
    lines.push(
      "A closed-loop wrk probe, then bisection of turnoload's open-loop rate; a step is invalid (not held against the service) when the generator's own scheduling error p99 is over a quarter of the SLO.",
      "",
      "| setup | max sustainable req/s | wrk probe req/s | ratio | knee (first broken) | bounded by the generator | SLO | CPU µs per request at the max (by process) | what saturated | I1-I4 | search took |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const m of maxes) {
      if (m.calibration !== undefined)
        lines.push(searchRow("bare Bun.serve (calibration)", m.calibration, Number(m.settings.sloMs)));
      lines.push(searchRow(labelOf(m), m, Number(m.settings.sloMs)));
    }
    lines.push("");
    for (const m of maxes) {
      lines.push(`Command: \`${m.settings.command ?? "npm run loadtest:max"}\` (${m.startedAt}).`, "");
      if (m.calibration !== undefined) lines.push(...stepTable("the bare Bun.serve (calibration)", m.calibration));
      lines.push(...stepTable(labelOf(m), m));
    }
  }
  if (runs.length > 0) {
    lines.push("## Runs per tool (`npm run loadtest`)", "");
    lines.push(
      "| tool | loop | setup | dist / ids | conns | rate | req/s | p50 | p90 | p99 | p99.9 ms | errors | non-2xx | verification |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const r of runs) {
      const s = r.settings;
      lines.push(
        `| ${r.tool} | ${CLOSED_LOOP.has(r.tool) ? "closed" : "open"} | ${labelOf(r)} | ${s.dist} / ${s.ids} | ${s.connections} | ${s.rate ?? "-"} | **${fmt(r.rps)}** | ${fmt(r.latencyMs.p50)} | ${fmt(r.latencyMs.p90)} | ${fmt(r.latencyMs.p99)} | ${fmt(r.latencyMs.p999)} | ${r.errors} | ${r.non2xx} | ${r.verification === undefined ? "-" : `${r.verification.kind}: ${r.verification.summary}`} |`,
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
    for (const chart of charts) lines.push(`![${chart}](${chart})`, "");
  }
  lines.push(`Source data: ${relative(outDir, resultsDir)}/ (${results.length} files).`, "");
  return lines.join("\n");
}

const USAGE = `usage: npm run loadtest:report -- [--results DIR] [--out DIR]
Renders README.md and SVG charts from the result JSON files.
  --results DIR   result files (default loadtest/results)
  --out DIR       where to write (default docs/reports/load-testing)
  --help          this text`;

async function main(resultsDir: string, outDir: string): Promise<number> {
  const results = loadResults(resultsDir);
  mkdirSync(outDir, { recursive: true });
  const specs = chartSpecs(results);
  const charts: string[] = [];
  for (const [file, spec] of Object.entries(specs)) {
    writeFileSync(join(outDir, file), await renderSvg(spec));
    charts.push(file);
  }
  // The directory is generated: a chart no longer drawn (nothing to show) must not linger.
  for (const file of readdirSync(outDir)) if (file.endsWith(".svg") && !charts.includes(file)) rmSync(join(outDir, file));
  const readme = join(outDir, "README.md");
  writeFileSync(readme, markdown(results, charts, resultsDir, outDir));
  // Formatted as the repository's format check wants it, so a fresh report never fails CI.
  const biome = join(import.meta.dir, "../node_modules/.bin/biome");
  if (await Bun.file(biome).exists()) Bun.spawnSync([biome, "format", "--write", readme], { stdout: "ignore", stderr: "ignore" });
  process.stderr.write(`rendered ${charts.length} charts from ${results.length} results\n`);
  console.log(readme);
  return 0;
}

if (import.meta.main)
  await runCommand(
    { name: "loadtest:report", usage: USAGE, options: { results: { type: "string" }, out: { type: "string" } } },
    (values) =>
      main(
        values.results ?? join(import.meta.dir, "results"),
        values.out ?? join(import.meta.dir, "../docs/reports/load-testing"),
      ),
  );
