/**
 * `npm run loadtest:max -- --target URL [--slo-ms 10] [--max-error-rate 0.001] [--start 500]
 *   [--factor 1.5] [--step-seconds 10] [--max-steps 10] [--refine 2] [--retries 1] [--ports redis:6379]
 *   [--pids name:pid]`
 *
 * Steps turnoload's open-loop rate up (start, start*factor, ...) until a step breaks the SLO (p99
 * over --slo-ms, measured from intended send times) or the error rate (transport errors and 5xx)
 * exceeds --max-error-rate (if the very first step breaks, it halves the rate until one holds);
 * then bisects between the last good and the first bad rate --refine times. A broken step is
 * tried again --retries times (default 1) before it counts as broken. Reports the maximum
 * sustainable rate, the knee (the first rate that broke the SLO) and what saturated there (CPU of the target's processes, of watched ports/pids, of this generator
 * and of the host). The whole history of all steps goes through the I1-I4 checker at the end.
 * Bounded: at most (max-steps * 2 + refine) * (retries + 1) steps of step-seconds each.
 */
import type { HistoryEntry } from "../test/helpers/history-checker.ts";
import { describeCpu, type StepCpu, saturation } from "./saturation.ts";
import { startCpuSample, watchGroups } from "./cpu.ts";
import { allIds } from "./ids.ts";
import { type LoadOptions, numberOption, parseLoadOptions, USAGE, UsageError } from "./options.ts";
import { machineInfo, type Percentiles, percentiles, progress, type Verification, writeResult } from "./result.ts";
import { driveOpenLoop } from "./tools/turnoload.ts";
import { readCounters, verifyHistory } from "./verify.ts";

export interface MaxStep {
  readonly offered: number;
  readonly achieved: number;
  readonly requests: number;
  readonly latencyMs: Percentiles;
  readonly errors: number;
  readonly errorRate: number;
  readonly ok: boolean;
  readonly why: string;
  readonly cpu: StepCpu;
}

export interface MaxResult {
  readonly schema: 1;
  readonly kind: "max";
  readonly tool: "turnoload";
  readonly label: string;
  readonly startedAt: string;
  readonly settings: Record<string, unknown>;
  readonly steps: readonly MaxStep[];
  readonly maxSustainableRate: number;
  readonly knee: number | null;
  readonly saturated: string;
  readonly verification: Verification;
  readonly machine: ReturnType<typeof machineInfo>;
}

const EXTRA = ["slo-ms", "max-error-rate", "start", "factor", "step-seconds", "max-steps", "refine", "retries", "ports", "pids"];

export interface MaxOptions {
  readonly load: LoadOptions;
  readonly sloMs: number;
  readonly maxErrorRate: number;
  readonly start: number;
  readonly factor: number;
  readonly stepSeconds: number;
  readonly maxSteps: number;
  readonly refine: number;
  /** A broken step is run again this many times; the rate holds if any try holds (default 1). */
  readonly retries: number;
  readonly ports: string[];
  readonly pids: string[];
}

export function parseMaxOptions(argv: readonly string[]): MaxOptions {
  const withTool = argv.includes("--tool") ? argv : ["--tool", "turnoload", ...argv];
  const load = parseLoadOptions(withTool, EXTRA);
  if (load.tool !== "turnoload") throw new UsageError("loadtest:max steps turnoload's open-loop rate; drop --tool");
  const raw = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const name = (argv[i] as string).replace(/^--/, "");
    if (EXTRA.includes(name)) raw.set(name, argv[i + 1] ?? true);
  }
  const list = (name: string) => {
    const value = raw.get(name);
    return typeof value === "string" ? value.split(",").filter((s) => s !== "") : [];
  };
  return {
    load,
    sloMs: numberOption(raw, "slo-ms", 10, 0.1, 10_000),
    maxErrorRate: numberOption(raw, "max-error-rate", 0.001, 0, 1),
    start: numberOption(raw, "start", 500, 1, 10_000_000),
    factor: numberOption(raw, "factor", 1.5, 1.05, 10),
    stepSeconds: numberOption(raw, "step-seconds", 10, 1, 300),
    maxSteps: Math.floor(numberOption(raw, "max-steps", 10, 1, 40)),
    refine: Math.floor(numberOption(raw, "refine", 2, 0, 6)),
    retries: Math.floor(numberOption(raw, "retries", 1, 0, 3)),
    ports: list("ports"),
    pids: list("pids"),
  };
}

export async function findMaxRate(options: MaxOptions): Promise<MaxResult> {
  const startedAt = new Date().toISOString();
  const load: LoadOptions = { ...options.load, duration: options.stepSeconds };
  const ids = allIds(load.idPrefix, load.ids);
  const before = await readCounters(load.target, ids);
  const groups = watchGroups(Number(new URL(load.target).port || 80), options.ports, options.pids);
  progress(`watching CPU of: ${groups.map((g) => `${g.name} [${g.pids.join(",")}]`).join("; ") || "nothing found"}`);
  const history: HistoryEntry[] = [];
  const steps: MaxStep[] = [];
  // On a shared host one latency spike can break a step that the service sustains: a broken step
  // is retried, and the rate counts as sustainable if one try holds (every try stays in the result).
  const step = async (rate: number): Promise<MaxStep> => {
    let result = await tryStep(rate);
    for (let i = 0; i < options.retries && !result.ok; i++) result = await tryStep(rate);
    return result;
  };
  const tryStep = async (rate: number): Promise<MaxStep> => {
    const stop = startCpuSample(groups);
    const run = await driveOpenLoop(load, ids, rate);
    const cpu = stop().percent;
    for (const entry of run.history) history.push(entry);
    const fivexx = Object.entries(run.statusCounts)
      .filter(([status]) => status.startsWith("5"))
      .reduce((n, [, c]) => n + c, 0);
    const errors = run.errors + fivexx;
    const latencyMs = percentiles(run.latencies);
    const errorRate = errors / Math.max(1, run.history.length);
    const why =
      latencyMs.p99 > options.sloMs
        ? `p99 ${latencyMs.p99} ms > SLO ${options.sloMs} ms`
        : errorRate > options.maxErrorRate
          ? `error rate ${(errorRate * 100).toFixed(2)}% > ${(options.maxErrorRate * 100).toFixed(2)}%`
          : "";
    const result: MaxStep = {
      offered: rate,
      achieved: Math.round((run.history.length / run.seconds) * 10) / 10,
      requests: run.history.length,
      latencyMs,
      errors,
      errorRate,
      ok: why === "",
      why,
      cpu,
    };
    steps.push(result);
    progress(
      `step ${rate}/s: achieved ${result.achieved}/s, p50 ${latencyMs.p50} p99 ${latencyMs.p99} p99.9 ${latencyMs.p999} ms, errors ${errors}; ${result.ok ? "ok" : `BROKEN: ${why}`}; CPU ${describeCpu(cpu)}`,
    );
    return result;
  };

  // One second at the start rate first: connections opened and code warmed, not counted in a step.
  const warmup = await driveOpenLoop({ ...load, duration: 1 }, ids, options.start);
  for (const entry of warmup.history) history.push(entry);
  let good = 0;
  let bad: number | null = null;
  let rate = options.start;
  for (let i = 0; i < options.maxSteps; i++) {
    const result = await step(Math.round(rate));
    if (!result.ok) {
      bad = result.offered;
      break;
    }
    good = result.offered;
    rate *= options.factor;
  }
  // Broken from the first step: walk down (halving, within the step budget) to a rate that holds.
  for (let i = 0; good === 0 && bad !== null && i < options.maxSteps && bad / 2 >= 10; i++) {
    const result = await step(Math.round(bad / 2));
    if (result.ok) good = result.offered;
    else bad = result.offered;
  }
  for (let i = 0; i < options.refine && bad !== null && bad - good > Math.max(10, good * 0.05); i++) {
    const mid = Math.round((good + bad) / 2);
    const result = await step(mid);
    if (result.ok) good = mid;
    else bad = mid;
  }
  const after = await readCounters(load.target, ids);
  const verification = verifyHistory(history, before, after);
  const knee = bad;
  const kneeStep = steps.filter((s) => s.offered === knee).at(-1);
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
      start: options.start,
      factor: options.factor,
      stepSeconds: options.stepSeconds,
      maxSteps: options.maxSteps,
      refine: options.refine,
      retries: options.retries,
      netns: load.netns,
    },
    steps,
    maxSustainableRate: good,
    knee,
    saturated:
      kneeStep === undefined ? "nothing: the SLO held up to the last step (raise --max-steps)" : saturation(kneeStep.cpu),
    verification,
    machine: machineInfo(),
  };
}

async function main(): Promise<number> {
  let options: MaxOptions;
  try {
    options = parseMaxOptions(process.argv.slice(2));
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(
        `loadtest:max: ${error.message}\n${USAGE}\n  loadtest:max adds: --slo-ms 10 --max-error-rate 0.001 --start 500 --factor 1.5 --step-seconds 10 --max-steps 10 --refine 2 --retries 1 --ports name:port,... --pids name:pid+pid,...\n`,
      );
      return 2;
    }
    throw error;
  }
  const result = await findMaxRate(options);
  const path = writeResult(options.load.out, result);
  process.stderr.write(
    `max sustainable rate: ${result.maxSustainableRate} req/s (p99 <= ${options.sloMs} ms, errors <= ${options.maxErrorRate * 100}%)\n` +
      `knee: ${result.knee ?? "not reached"}; saturated: ${result.saturated}\n` +
      `verification over all steps: ${result.verification.summary}\n` +
      result.verification.problems
        .slice(0, 20)
        .map((p) => `  ${p}\n`)
        .join(""),
  );
  console.log(path);
  return result.verification.ok ? 0 : 1;
}

if (import.meta.main) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`loadtest:max: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(3);
    },
  );
}
