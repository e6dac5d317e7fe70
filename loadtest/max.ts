/**
 * `npm run loadtest:max -- --target URL [options]`: the highest open-loop rate the target sustains
 * (p99 from intended send times <= --slo-ms, error rate <= --max-error-rate), found in about a
 * minute and a half with the defaults:
 *
 * 1. a short closed-loop wrk probe (3 s, 64 connections, the same ids) gives the throughput
 *    ceiling W; it also warms the service up;
 * 2. bisection of turnoload's open-loop rate between 0 (holds) and W, starting at W/2, 5 s steps,
 *    until the bracket is within --precision (5 %) or --max-steps (8) is spent.
 *
 * A step is **invalid** when the generator's own scheduling error (p99 of how late it noticed due
 * requests) is over --max-lag-share (25 %) of the SLO: it is run again (--retries times), with one
 * more worker thread when its threads were busy (up to --max-workers), and if it stays invalid, the rate counts as
 * not shown to hold and the result says the search was bounded by the generator, not by the
 * service. A step that breaks the SLO is retried too (a shared host has latency spikes: one 50 ms
 * stall of a 5 s step is 1 % of it, enough to break a p99); a rate
 * holds if one try holds.
 * Every step is verified (I1-I4 over its full history against the counters read before and after
 * it). CPU of the target's processes (found by port), of watched --ports / --pids, of this
 * generator and of the host is measured per step, and the service's CPU per request at the
 * maximum is reported. --calibrate first runs the same search against bench/baseline-server.ts
 * (a bare Bun.serve): the generator's own ceiling on this machine, in the same run.
 *
 * With --netns NAME the whole command re-runs inside that namespace (wrk too), as `npm run
 * loadtest` does. The last stderr line is `max sustainable rate: N req/s ...`; the last stdout line
 * is the path of the result JSON. Exit 0 ok, 1 a verification failed, 2 bad usage.
 */
import { join } from "node:path";
import { integerArg, listArg, numberArg, runCommand, UsageError } from "../bench/toolkit/cli.ts";
import { type CpuPercent, startCpuMeter } from "../bench/toolkit/proc.ts";
import { runWrk } from "../bench/toolkit/wrk.ts";
import { freePort, waitFor } from "../harness/ports.ts";
import { allIds } from "./ids.ts";
import { maybeReExecInNetns } from "./netns.ts";
import { LOAD_ARGS, type LoadOptions, loadOptionsFrom } from "./options.ts";
import { machineInfo, type Percentiles, progress, type Verification, writeResult } from "./result.ts";
import { describeCpu, saturation } from "./saturation.ts";
import { watchGroups } from "./watch.ts";
import { autoWorkers, OpenLoopGenerator } from "./tools/turnoload.ts";
import { readCounters, verifyHistory } from "./verify.ts";

export type StepVerdict = "ok" | "broken" | "invalid";

export interface MaxStep {
  readonly offered: number;
  readonly achieved: number;
  readonly requests: number;
  readonly workers: number;
  /** From intended send times (what the SLO judges). */
  readonly latencyMs: Percentiles;
  /** From the actual write: the service's share. */
  readonly serviceMs: Percentiles;
  /** The generator's scheduling error. */
  readonly schedulingErrorMs: Percentiles;
  /** Intended send to write: scheduling error plus waits for a free connection (absent in older results). */
  readonly sendDelayMs?: Percentiles;
  readonly errors: number;
  readonly errorRate: number;
  readonly verdict: StepVerdict;
  /** Kept for older readers: verdict === "ok". */
  readonly ok: boolean;
  readonly why: string;
  readonly cpu: CpuPercent;
  readonly verification: string;
}

export interface MaxSearch {
  readonly target: string;
  readonly wrk: { readonly rps: number; readonly connections: number; readonly seconds: number; readonly p99Ms: number };
  readonly steps: readonly MaxStep[];
  readonly maxSustainableRate: number;
  /** The lowest rate shown not to hold (broken), or null. */
  readonly knee: number | null;
  readonly ratioToWrk: number;
  /** True when the upper bound came from invalid steps: the generator, not the service, set it. */
  readonly generatorBound: boolean;
  readonly saturated: string;
  /** CPU µs per request of the server side at the maximum: the target's processes plus watched ones (Redis...). */
  readonly serviceCpuUsPerRequest: number | undefined;
  readonly verification: Verification;
  readonly seconds: number;
}

export interface MaxResult extends MaxSearch {
  readonly schema: 1;
  readonly kind: "max";
  readonly tool: "turnoload";
  readonly label: string;
  readonly startedAt: string;
  readonly settings: Record<string, unknown>;
  /** --calibrate: the same search against a bare Bun.serve in the same run. */
  readonly calibration?: MaxSearch;
  readonly machine: ReturnType<typeof machineInfo>;
}

export interface MaxOptions {
  readonly load: LoadOptions;
  readonly sloMs: number;
  readonly maxErrorRate: number;
  readonly stepSeconds: number;
  readonly probeSeconds: number;
  readonly probeConnections: number;
  readonly maxSteps: number;
  readonly precision: number;
  readonly retries: number;
  readonly maxLagShare: number;
  readonly maxWorkers: number;
  readonly calibrate: boolean;
  readonly ports: string[];
  readonly pids: string[];
}

export const MAX_ARGS = {
  ...LOAD_ARGS,
  "slo-ms": { type: "string" },
  "max-error-rate": { type: "string" },
  "step-seconds": { type: "string" },
  "probe-seconds": { type: "string" },
  "probe-connections": { type: "string" },
  "max-steps": { type: "string" },
  precision: { type: "string" },
  retries: { type: "string" },
  "max-lag-share": { type: "string" },
  "max-workers": { type: "string" },
  calibrate: { type: "boolean" },
  ports: { type: "string" },
  pids: { type: "string" },
} as const;

const CORES = navigator.hardwareConcurrency || 1;

export const MAX_USAGE = `usage: npm run loadtest:max -- --target URL [options]
Finds the highest open-loop rate with p99 <= SLO: a closed-loop wrk probe, then bisection.
  --slo-ms MS             p99 latency objective, from intended send times (default 10)
  --max-error-rate F      transport errors + 5xx per request allowed (default 0.001)
  --step-seconds S        seconds per open-loop step (default 5)
  --probe-seconds S       seconds of the wrk probe (default 3)
  --probe-connections C   wrk connections (default 64)
  --max-steps N           open-loop steps at most, retries not counted (default 8)
  --precision F           stop when the bracket is within this share of the rate (default 0.05)
  --retries N             a broken or invalid step is tried again N times (default 2)
  --max-lag-share F       a step is invalid when the generator's scheduling-error p99 > F x SLO (default 0.25)
  --max-workers W         turnoload worker threads at most (default ${CORES}, the cores)
  --calibrate             first run the same search against a bare Bun.serve (bench/baseline-server.ts)
  --ports name:port,...   also watch the CPU of the processes listening there (e.g. redis:6379)
  --pids name:pid+pid,... also watch these processes
Load options (as npm run loadtest; defaults here: --ids 1 --dist hot --connections 256):
  --ids N --dist hot|uniform|zipf --connections C --workers W --netns NAME --id-prefix P
  --label TEXT --timeout-ms MS --out DIR --no-verify
  --help                  this text
The last line on stderr is "max sustainable rate: N req/s ..."; the last on stdout the result path.`;

type MaxArgs = { readonly [K in keyof typeof MAX_ARGS]?: (typeof MAX_ARGS)[K]["type"] extends "boolean" ? boolean : string };

export function maxOptionsFrom(raw: MaxArgs): MaxOptions {
  if (raw.tool !== undefined && raw.tool !== "turnoload")
    throw new UsageError("loadtest:max drives turnoload's open loop (and wrk for the probe); drop --tool");
  if (raw.rate !== undefined || raw.duration !== undefined)
    throw new UsageError("loadtest:max chooses the rates itself: drop --rate/--duration (see --step-seconds, --max-steps)");
  const load = loadOptionsFrom({ ...raw, tool: "turnoload" }, { ids: 1, dist: "hot", connections: 256 });
  return {
    load,
    sloMs: numberArg(raw["slo-ms"], "slo-ms", 10, 0.1, 10_000),
    maxErrorRate: numberArg(raw["max-error-rate"], "max-error-rate", 0.001, 0, 1),
    stepSeconds: numberArg(raw["step-seconds"], "step-seconds", 5, 1, 300),
    probeSeconds: integerArg(raw["probe-seconds"], "probe-seconds", 3, 1, 60),
    probeConnections: integerArg(raw["probe-connections"], "probe-connections", 64, 1, 10_000),
    maxSteps: integerArg(raw["max-steps"], "max-steps", 8, 1, 40),
    precision: numberArg(raw.precision, "precision", 0.05, 0.005, 0.5),
    retries: integerArg(raw.retries, "retries", 2, 0, 3),
    maxLagShare: numberArg(raw["max-lag-share"], "max-lag-share", 0.25, 0.01, 1),
    maxWorkers: integerArg(raw["max-workers"], "max-workers", CORES, 1, 64),
    calibrate: raw.calibrate ?? false,
    ports: listArg(raw.ports),
    pids: listArg(raw.pids),
  };
}

/** Judges one step: invalid (generator late), broken (SLO or errors), or ok. */
export function judgeStep(
  s: { latencyMs: Percentiles; schedulingErrorMs: Percentiles; errorRate: number },
  o: Pick<MaxOptions, "sloMs" | "maxErrorRate" | "maxLagShare">,
): { verdict: StepVerdict; why: string } {
  const lagLimit = o.maxLagShare * o.sloMs;
  if (s.schedulingErrorMs.p99 > lagLimit)
    return {
      verdict: "invalid",
      why: `generator late: scheduling error p99 ${s.schedulingErrorMs.p99} ms > ${Math.round(lagLimit * 1000) / 1000} ms (${o.maxLagShare} x SLO)`,
    };
  if (s.latencyMs.p99 > o.sloMs) return { verdict: "broken", why: `p99 ${s.latencyMs.p99} ms > SLO ${o.sloMs} ms` };
  if (s.errorRate > o.maxErrorRate)
    return {
      verdict: "broken",
      why: `error rate ${(s.errorRate * 100).toFixed(2)}% > ${(o.maxErrorRate * 100).toFixed(2)}%`,
    };
  return { verdict: "ok", why: "" };
}

/** CPU of every watched server-side group (not the generator or the host), µs per request. */
export function serverCpuUsPerRequest(step: MaxStep): number | undefined {
  if (step.achieved <= 0) return undefined;
  const percent = Object.entries(step.cpu)
    .filter(([name]) => !["generator", "host", "hostCores"].includes(name))
    .reduce((sum, [, v]) => sum + v, 0);
  return percent === 0 ? undefined : Math.round((percent / 100) * (1e6 / step.achieved) * 10) / 10;
}

/** The whole search against one target; `load.target` is the service. */
export async function searchMax(options: MaxOptions, generator: OpenLoopGenerator): Promise<MaxSearch> {
  const t0 = performance.now();
  const load = options.load;
  const ids = allIds(load.idPrefix, load.ids);
  const groups = watchGroups(Number(new URL(load.target).port || 80), options.ports, options.pids);
  progress(`watching CPU of: ${groups.map((g) => `${g.name} [${g.pids.join(",")}]`).join("; ") || "nothing found"}`);

  const probe = await runWrk({
    url: load.target,
    connections: options.probeConnections,
    threads: 1,
    seconds: options.probeSeconds,
    ids: load.ids,
    dist: load.dist,
    prefix: load.idPrefix,
    timeoutSeconds: Math.ceil(load.timeoutMs / 1000),
  });
  const wrk = {
    rps: Math.round(probe.rps),
    connections: options.probeConnections,
    seconds: options.probeSeconds,
    p99Ms: probe.summary.latencyMs.p99,
  };
  progress(`wrk closed-loop probe: ${wrk.rps} req/s (${wrk.connections} connections, ${wrk.seconds} s, p99 ${wrk.p99Ms} ms)`);
  if (wrk.rps <= 0) throw new Error(`wrk got no answers from ${load.target}`);

  const steps: MaxStep[] = [];
  const problems: string[] = [];
  const totals: Record<string, number> = {};
  let verifiedSteps = 0;
  let workers = load.workers ?? autoWorkers(wrk.rps / 2, options.maxWorkers);

  const tryStep = async (rate: number, seconds: number, record: boolean): Promise<MaxStep> => {
    const verify = load.verify && record;
    const before = verify ? await readCounters(load.target, ids) : new Map<string, number>();
    const stop = startCpuMeter(groups);
    const run = await generator.run({
      target: load.target,
      rate,
      seconds,
      connections: load.connections,
      ids,
      dist: load.dist,
      hostile: 0,
      timeoutMs: load.timeoutMs,
      record: verify,
      workers,
    });
    const cpu = stop();
    run.latency.destroy();
    const fivexx = Object.entries(run.statusCounts)
      .filter(([status]) => status.startsWith("5"))
      .reduce((n, [, c]) => n + c, 0);
    const errors = run.errors + fivexx;
    const requests = run.answered + run.errors;
    const errorRate = errors / Math.max(1, requests);
    let verification = "not verified";
    if (verify) {
      const after = await readCounters(load.target, ids);
      const extra =
        run.shapeErrors > 0 ? [`${run.shapeErrors} 200 responses without {"id","turno"}: ${run.shapeExamples[0]}`] : [];
      const v = verifyHistory(run.history, before, after, extra);
      verification = v.summary;
      verifiedSteps++;
      problems.push(...v.problems.map((p) => `at ${rate}/s: ${p}`));
      for (const [k, n] of Object.entries(v.totals)) totals[k] = (totals[k] ?? 0) + n;
    }
    const judged = judgeStep({ latencyMs: run.latencyMs, schedulingErrorMs: run.lagMs, errorRate }, options);
    return {
      offered: rate,
      achieved: Math.round((requests / run.seconds) * 10) / 10,
      requests,
      workers: run.workers,
      latencyMs: run.latencyMs,
      serviceMs: run.serviceMs,
      schedulingErrorMs: run.lagMs,
      sendDelayMs: run.sendDelayMs,
      errors,
      errorRate,
      verdict: judged.verdict,
      ok: judged.verdict === "ok",
      why: judged.why,
      cpu,
      verification,
    };
  };

  const step = async (rate: number): Promise<MaxStep> => {
    let result: MaxStep | undefined;
    for (let attempt = 0; attempt <= options.retries; attempt++) {
      result = await tryStep(rate, options.stepSeconds, true);
      steps.push(result);
      progress(
        `step ${rate}/s (${result.workers} worker${result.workers === 1 ? "" : "s"}): achieved ${result.achieved}/s, p50 ${result.latencyMs.p50} p99 ${result.latencyMs.p99} ms (service p99 ${result.serviceMs.p99}, scheduling error p99 ${result.schedulingErrorMs.p99}, send delay p99 ${result.sendDelayMs?.p99}), errors ${result.errors}; ${result.verdict === "ok" ? "ok" : `${result.verdict.toUpperCase()}: ${result.why}`}; CPU ${describeCpu(result.cpu)}`,
      );
      if (result.verdict === "ok") break;
      // A generator that fell behind because its threads were busy (over 80% of a core each) gets
      // one more thread for the next try, while there are cores; one that fell behind with idle
      // threads was descheduled (a busy host), and more threads would only compete harder.
      const busy = (result.cpu.generator ?? 0) / result.workers > 80;
      if (result.verdict === "invalid" && busy && workers < options.maxWorkers) workers++;
    }
    return result as MaxStep;
  };

  // Connections opened, JIT warm, not judged (its history is still checked with the first step's counters).
  await tryStep(Math.max(10, Math.round(wrk.rps / 4)), 1, false);
  let good = 0;
  let bad = wrk.rps;
  let badFromGenerator = false;
  let knee: number | null = null;
  for (let i = 0; i < options.maxSteps && (bad - good) / bad > options.precision; i++) {
    const rate = Math.round((good + bad) / 2);
    const result = await step(rate);
    if (result.verdict === "ok") good = rate;
    else {
      bad = rate;
      badFromGenerator = result.verdict === "invalid";
      if (result.verdict === "broken") knee = rate;
    }
  }
  const held = steps.filter((s) => s.offered === good && s.verdict === "ok").at(-1);
  const verification: Verification = {
    kind: "history",
    ok: problems.length === 0,
    summary:
      verifiedSteps === 0
        ? "not verified (--no-verify, or the calibration's bare server, which keeps no counter contract)"
        : `${problems.length === 0 ? "OK" : "VIOLATIONS"}: ${verifiedSteps} steps verified (I1-I4), ${totals.requests ?? 0} requests, ${totals.duplicates ?? 0} duplicates, ${totals.gaps ?? 0} gaps, ${totals.orderViolations ?? 0} order violations`,
    problems: problems.slice(0, 50),
    totals,
    counters: { ids: ids.length, sum: 0, max: 0 },
  };
  const kneeStep = steps.filter((s) => s.offered === knee && s.verdict === "broken").at(-1);
  return {
    target: load.target,
    wrk,
    steps,
    maxSustainableRate: good,
    knee,
    ratioToWrk: Math.round((good / wrk.rps) * 1000) / 1000,
    generatorBound: badFromGenerator,
    saturated:
      kneeStep !== undefined
        ? saturation(kneeStep.cpu)
        : badFromGenerator
          ? `the generator: scheduling error over ${options.maxLagShare} x SLO at ${bad}/s even with ${workers} worker(s)`
          : `nothing shown: the SLO held up to ${good}/s and wrk's ${wrk.rps}/s bounded the search`,
    serviceCpuUsPerRequest: held === undefined ? undefined : serverCpuUsPerRequest(held),
    verification,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
}

/** Starts bench/baseline-server.ts (a bare Bun.serve) on a free port for --calibrate. */
async function startBaseline(): Promise<{ url: string; stop: () => Promise<unknown> }> {
  const port = await freePort();
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "../bench/baseline-server.ts")], {
    env: { ...process.env, PORT: String(port) },
    stdout: "ignore",
    stderr: "inherit",
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor("baseline server", async () => (await fetch(`${url}/turno/warmup`)).ok);
  return {
    url,
    stop: async () => {
      child.kill("SIGTERM");
      return await child.exited;
    },
  };
}

export function summaryLine(s: MaxSearch, sloMs: number, maxErrorRate: number): string {
  return (
    `max sustainable rate: ${s.maxSustainableRate} req/s (p99 <= ${sloMs} ms, errors <= ${maxErrorRate * 100}%); ` +
    `wrk closed loop ${s.wrk.rps} req/s; ratio ${s.ratioToWrk}${s.generatorBound ? " (bounded by the generator, not the service)" : ""}`
  );
}

/** `command` is stored in the result: how to run this search again. */
export async function findMaxRate(options: MaxOptions, command: string): Promise<MaxResult> {
  const generator = new OpenLoopGenerator();
  try {
    return await findMaxRateWith(options, generator, command);
  } finally {
    generator.close();
  }
}

async function findMaxRateWith(options: MaxOptions, generator: OpenLoopGenerator, command: string): Promise<MaxResult> {
  const startedAt = new Date().toISOString();
  let calibration: MaxSearch | undefined;
  if (options.calibrate) {
    const baseline = await startBaseline();
    try {
      progress(`calibration: the same search against a bare Bun.serve at ${baseline.url}`);
      calibration = await searchMax(
        { ...options, load: { ...options.load, target: baseline.url, verify: false }, ports: [], pids: [] },
        generator,
      );
      progress(`calibration: ${summaryLine(calibration, options.sloMs, options.maxErrorRate)}`);
    } finally {
      await baseline.stop();
    }
  }
  const search = await searchMax(options, generator);
  const { load } = options;
  return {
    schema: 1,
    kind: "max",
    tool: "turnoload",
    label: load.label,
    startedAt,
    settings: {
      target: load.target,
      connections: load.connections,
      ids: load.ids,
      dist: load.dist,
      sloMs: options.sloMs,
      maxErrorRate: options.maxErrorRate,
      stepSeconds: options.stepSeconds,
      probeSeconds: options.probeSeconds,
      probeConnections: options.probeConnections,
      maxSteps: options.maxSteps,
      precision: options.precision,
      retries: options.retries,
      maxLagShare: options.maxLagShare,
      maxWorkers: options.maxWorkers,
      verify: load.verify,
      netns: load.netns,
      command,
    },
    ...search,
    ...(calibration === undefined ? {} : { calibration }),
    machine: machineInfo(),
  };
}

async function main(options: MaxOptions): Promise<number> {
  if (await maybeReExecInNetns(options.load.netns, import.meta.path)) return 0;
  const result = await findMaxRate(options, `npm run loadtest:max -- ${process.argv.slice(2).join(" ")}`.trim());
  const path = writeResult(options.load.out, result);
  console.log(path);
  const c = result.calibration;
  process.stderr.write(
    (c === undefined
      ? ""
      : `calibration on a bare Bun.serve: open loop ${c.maxSustainableRate} req/s vs wrk ${c.wrk.rps} req/s = ${c.ratioToWrk}\n`) +
      `knee: ${result.knee ?? "not reached"}; saturated: ${result.saturated}\n` +
      `server-side CPU per request at the maximum (target + watched processes): ${result.serviceCpuUsPerRequest ?? "-"} µs; search took ${result.seconds} s\n` +
      `verification over all steps: ${result.verification.summary}\n` +
      result.verification.problems
        .slice(0, 20)
        .map((p) => `  ${p}\n`)
        .join("") +
      `${summaryLine(result, options.sloMs, options.maxErrorRate)}\n`,
  );
  return result.verification.ok ? 0 : 1;
}

if (import.meta.main)
  await runCommand({ name: "loadtest:max", usage: MAX_USAGE, options: MAX_ARGS }, (values) => main(maxOptionsFrom(values)));
