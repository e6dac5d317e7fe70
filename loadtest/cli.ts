/**
 * `npm run loadtest -- --tool <wrk|hey|ab|autocannon|turnoload|httperf|turnomatic-client> --target URL ...`: one
 * interface over every load tool. Progress goes to stderr; the last line on stdout is the path of
 * the result JSON (loadtest/results/). Every run is verified unless --no-verify: a checker that
 * finds a violation exits 1; bad usage exits 2 (--help prints the usage and exits 0).
 *
 * --netns NAME re-runs this very command inside that network namespace (netns.ts), so every tool,
 * ours and the external ones, runs from there: the hook for the multi-host topology.
 */
import { runCommand } from "../bench/toolkit/cli.ts";
import { maybeReExecInNetns } from "./netns.ts";
import { LOAD_ARGS, type LoadOptions, loadOptionsFrom, type ToolName, USAGE } from "./options.ts";
import { type LoadResult, machineInfo, writeResult } from "./result.ts";
import { runAb } from "./tools/ab.ts";
import { runAutocannon } from "./tools/autocannon.ts";
import { runHey } from "./tools/hey.ts";
import { runHttperf } from "./tools/httperf.ts";
import type { ToolOutcome, ToolRunner } from "./tools/tool.ts";
import { runTurnoload } from "./tools/turnoload.ts";
import { runTurnomaticClient } from "./tools/turnomatic-client.ts";
import { runWrk } from "./tools/wrk.ts";

const RUNNERS: Record<ToolName, ToolRunner> = {
  wrk: runWrk,
  hey: runHey,
  ab: runAb,
  autocannon: runAutocannon,
  turnoload: runTurnoload,
  httperf: runHttperf,
  "turnomatic-client": runTurnomaticClient,
};

/** Runs one load test and writes its result; returns the result and its path. */
export async function runLoadTest(options: LoadOptions): Promise<{ result: LoadResult; path: string }> {
  const startedAt = new Date().toISOString();
  const outcome: ToolOutcome = await RUNNERS[options.tool](options);
  const { out: _out, ...settings } = options;
  const result: LoadResult = {
    schema: 1,
    kind: "run",
    tool: options.tool,
    label: options.label,
    startedAt,
    settings: { ...settings, command: outcome.command },
    requests: outcome.requests,
    seconds: Math.round(outcome.seconds * 1000) / 1000,
    rps: Math.round((outcome.requests / Math.max(outcome.seconds, 0.001)) * 10) / 10,
    latencyMs: outcome.latencyMs,
    errors: outcome.errors,
    non2xx: outcome.non2xx,
    statusCounts: outcome.statusCounts,
    verification: outcome.verification,
    notes: outcome.notes,
    machine: machineInfo(),
    extra: outcome.extra,
  };
  return { result, path: writeResult(options.out, result) };
}

export function describe(result: LoadResult): string {
  const l = result.latencyMs;
  const lines = [
    `${result.tool}${result.label === "" ? "" : ` [${result.label}]`}: ${result.requests} requests in ${result.seconds}s = ${result.rps} req/s; ` +
      `latency ms p50 ${l.p50} p90 ${l.p90} p99 ${l.p99} p99.9 ${l.p999} max ${l.max}; errors ${result.errors}, non-2xx ${result.non2xx}`,
  ];
  const v = result.verification;
  if (v !== undefined) {
    lines.push(`verification (${v.kind}): ${v.summary}`);
    lines.push(`counters after the run: ${v.counters.ids} ids, sum ${v.counters.sum}, largest ${v.counters.max}`);
    for (const problem of v.problems.slice(0, 20)) lines.push(`  ${problem}`);
  }
  return lines.join("\n");
}

async function main(options: LoadOptions): Promise<number> {
  if (await maybeReExecInNetns(options.netns, import.meta.path)) return 0;
  const { result, path } = await runLoadTest(options);
  process.stderr.write(`${describe(result)}\n`);
  console.log(path);
  return result.verification !== undefined && !result.verification.ok ? 1 : 0;
}

if (import.meta.main)
  await runCommand({ name: "loadtest", usage: USAGE, options: LOAD_ARGS }, (values) => main(loadOptionsFrom(values)));
