/**
 * A local autoscaler for the network-namespace topology (`npm run cluster -- autoscale`, see
 * docs/guides/scale-out.md). Each interval it measures the app hosts (CPU from /proc, p99 from the apps' histograms),
 * asks the pure `decide` what to do, and adds or removes one app host through the topology functions,
 * which register it in HAProxy over the admin socket (pre-declared slots, no reload).
 */
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { procCpuSecondsIfAlive } from "../../bench/toolkit/proc.ts";
import { moduleOfTheClusterTool } from "./errors.ts";
import {
  APP_METRICS_PORT,
  addAppHost,
  appNames,
  type ClusterState,
  lbStatRows,
  namespacePids,
  removeAppHost,
} from "./topology.ts";

export interface Policy {
  /** Fewest app hosts; below it the autoscaler adds hosts regardless of load. Default 2. */
  readonly min: number;
  /** Most app hosts (at most the cluster's HAProxy slots). Default 4. */
  readonly max: number;
  /** Mean CPU per app host (1 = one core) at or above which a host is added. Default 0.6. */
  readonly scaleOutCpu: number;
  /** Mean CPU per app host at or below which a host is removed. Default 0.2. */
  readonly scaleInCpu: number;
  /** p99 of turn requests over the interval (ms, apps' histograms) at or above which a host is added; 0 = off. Default 0. */
  readonly p99Ms: number;
  /** Minimum time after any scale event before the next scale-out (ms). Default 5000. */
  readonly cooldownOutMs: number;
  /** Minimum time after any scale event before the next scale-in (ms). Default 15000. */
  readonly cooldownInMs: number;
  /** Consecutive samples over the scale-out threshold before acting. Default 2. */
  readonly outSamples: number;
  /** Consecutive samples under the scale-in threshold before acting. Default 3. */
  readonly inSamples: number;
}

export const DEFAULT_POLICY: Policy = {
  min: 2,
  max: 4,
  scaleOutCpu: 0.6,
  scaleInCpu: 0.2,
  p99Ms: 0,
  cooldownOutMs: 5000,
  cooldownInMs: 15_000,
  outSamples: 2,
  inSamples: 3,
};

export interface Sample {
  /** Time of the sample (ms, any monotonic clock; the same as in `Memory.lastScaleAt`). */
  readonly at: number;
  /** App hosts in rotation. */
  readonly hosts: number;
  /** Mean CPU per app host over the last interval (1 = one core). */
  readonly cpu: number;
  /** p99 of turn requests (ms) over the last interval; undefined when no turn request completed. */
  readonly p99Ms: number | undefined;
}

/** What the loop remembers between decisions. */
export interface Memory {
  readonly lastScaleAt: number;
  readonly hotSamples: number;
  readonly coldSamples: number;
}

export const INITIAL_MEMORY: Memory = { lastScaleAt: Number.NEGATIVE_INFINITY, hotSamples: 0, coldSamples: 0 };

export interface Decision {
  readonly action: "out" | "in" | "hold";
  readonly reason: string;
  readonly memory: Memory;
}

const fmt = (n: number) => n.toFixed(2);

/**
 * The scaling rule, pure: one host at a time; min/max first; out on CPU or latency pressure sustained
 * for `outSamples`; in when CPU is low for `inSamples` and the remaining hosts would stay under the
 * scale-out threshold (no flapping); every action waits for its cooldown since the last scale event.
 * The caller sets `memory.lastScaleAt` to the time the action finished (see `afterScale`).
 */
export function decide(sample: Sample, policy: Policy, memory: Memory): Decision {
  const { hosts, cpu, p99Ms, at } = sample;
  const sinceScale = at - memory.lastScaleAt;
  const slow = policy.p99Ms > 0 && p99Ms !== undefined && p99Ms >= policy.p99Ms;
  const hot = cpu >= policy.scaleOutCpu || slow;
  const projected = hosts > 1 ? (cpu * hosts) / (hosts - 1) : Number.POSITIVE_INFINITY;
  const calm = policy.p99Ms <= 0 || p99Ms === undefined || p99Ms < policy.p99Ms / 2;
  const cold = cpu <= policy.scaleInCpu && calm && projected < policy.scaleOutCpu;
  const next: Memory = {
    lastScaleAt: memory.lastScaleAt,
    hotSamples: hot ? memory.hotSamples + 1 : 0,
    coldSamples: cold ? memory.coldSamples + 1 : 0,
  };
  const load = `cpu ${fmt(cpu)}/host on ${hosts}${p99Ms === undefined ? "" : `, p99 ${p99Ms.toFixed(1)} ms`}`;
  if (hosts < policy.min) return { action: "out", reason: `${hosts} hosts, below the minimum ${policy.min}`, memory: next };
  if (hosts > policy.max) return { action: "in", reason: `${hosts} hosts, above the maximum ${policy.max}`, memory: next };
  if (hot) {
    const why = cpu >= policy.scaleOutCpu ? `cpu >= ${policy.scaleOutCpu}` : `p99 >= ${policy.p99Ms} ms`;
    if (hosts >= policy.max) return { action: "hold", reason: `${load}: ${why} but at the maximum ${policy.max}`, memory: next };
    if (next.hotSamples < policy.outSamples) {
      return { action: "hold", reason: `${load}: ${why} (${next.hotSamples}/${policy.outSamples} samples)`, memory: next };
    }
    if (sinceScale < policy.cooldownOutMs) {
      return { action: "hold", reason: `${load}: ${why}, in scale-out cooldown`, memory: next };
    }
    return { action: "out", reason: `${load}: ${why} for ${next.hotSamples} samples`, memory: next };
  }
  if (cold) {
    const why = `cpu <= ${policy.scaleInCpu} (${fmt(projected)} on ${hosts - 1})`;
    if (hosts <= policy.min) return { action: "hold", reason: `${load}: at the minimum ${policy.min}`, memory: next };
    if (next.coldSamples < policy.inSamples) {
      return { action: "hold", reason: `${load}: ${why} (${next.coldSamples}/${policy.inSamples} samples)`, memory: next };
    }
    if (sinceScale < policy.cooldownInMs) {
      return { action: "hold", reason: `${load}: ${why}, in scale-in cooldown`, memory: next };
    }
    return { action: "in", reason: `${load}: ${why} for ${next.coldSamples} samples`, memory: next };
  }
  return { action: "hold", reason: `${load}: within thresholds`, memory: next };
}

/** Memory after a scale action finished at `at`: cooldowns start, sample streaks restart. */
export function afterScale(at: number): Memory {
  return { lastScaleAt: at, hotSamples: 0, coldSamples: 0 };
}

/** Checks a policy; the messages say which flag to fix. */
export function validatePolicy(policy: Policy, slots: number): void {
  const fail = (message: string) => {
    throw new RangeError(message);
  };
  if (!Number.isInteger(policy.min) || policy.min < 1) fail(`--min must be an integer >= 1; got ${policy.min}.`);
  if (!Number.isInteger(policy.max) || policy.max < policy.min) fail(`--max must be an integer >= --min; got ${policy.max}.`);
  if (policy.max > slots) {
    fail(`--max ${policy.max} exceeds the cluster's ${slots} HAProxy slots; bring it up with --max-apps ${policy.max}.`);
  }
  if (!(policy.scaleInCpu >= 0 && policy.scaleInCpu < policy.scaleOutCpu)) {
    fail(`--scale-in-cpu (${policy.scaleInCpu}) must be >= 0 and below --scale-out-cpu (${policy.scaleOutCpu}).`);
  }
  for (const [flag, value] of [
    ["--p99-ms", policy.p99Ms],
    ["--cooldown-out-ms", policy.cooldownOutMs],
    ["--cooldown-in-ms", policy.cooldownInMs],
  ] as const) {
    if (!(value >= 0)) fail(`${flag} must be >= 0; got ${value}.`);
  }
}

/**
 * CPU per app host from /proc/<pid>/stat of the processes in its namespace (supervisor + workers).
 * A process is counted from its second sample on, so a new host's start-up cost does not count as load.
 */
export class CpuMeter {
  #last = new Map<number, number>();
  #lastAt = performance.now();

  /** CPU (cores) per host since the previous call. */
  sample(state: ClusterState): Record<string, number> {
    const now = performance.now();
    const seconds = Math.max((now - this.#lastAt) / 1000, 0.001);
    const next = new Map<number, number>();
    const result: Record<string, number> = {};
    for (const app of appNames(state)) {
      let cpuSeconds = 0;
      for (const pid of namespacePids(state.hosts[app]?.namespace as string)) {
        const current = procCpuSecondsIfAlive(pid);
        if (current === undefined) continue;
        next.set(pid, current);
        const previous = this.#last.get(pid);
        if (previous !== undefined) cpuSeconds += Math.max(0, current - previous);
      }
      result[app] = cpuSeconds / seconds;
    }
    this.#last = next;
    this.#lastAt = now;
    return result;
  }
}

/** Cumulative bucket counts of `turnomatic_http_request_duration_seconds` for route="turno", by `le` (seconds). */
export function parseTurnBuckets(metrics: string): Map<number, number> {
  const buckets = new Map<number, number>();
  for (const line of metrics.split("\n")) {
    if (!line.startsWith("turnomatic_http_request_duration_seconds_bucket{") || !line.includes('route="turno"')) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (le === undefined || !Number.isFinite(value)) continue;
    const bound = le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le);
    buckets.set(bound, (buckets.get(bound) ?? 0) + value);
  }
  return buckets;
}

/**
 * The p99 (ms) of cumulative bucket counts: the upper bound of the first bucket that holds 99 % of
 * the requests (an overestimate by at most one bucket, as Prometheus' histogram_quantile without
 * interpolation). Undefined without requests; Infinity when the p99 is above the largest bound.
 */
export function p99FromBuckets(buckets: ReadonlyMap<number, number>): number | undefined {
  const sorted = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total <= 0) return undefined;
  const found = sorted.find(([, count]) => count >= total * 0.99);
  return (found?.[0] ?? Number.POSITIVE_INFINITY) * 1000;
}

/**
 * Latency: the p99 of turn requests over the interval, from the apps' own histograms (the difference
 * of two scrapes, summed over the hosts). The loop runs in the root namespace, which cannot reach the
 * apps, so one curl inside the LB's namespace fetches every host's /metrics per sample. A host counts
 * from its second scrape. Also reads HAProxy's request total, to report the request rate.
 */
export class LatencyMeter {
  #last = new Map<string, Map<number, number>>();
  #lastTotal: number | undefined;

  async sample(state: ClusterState): Promise<{ p99Ms: number | undefined; requests: number }> {
    const rows = await lbStatRows(state);
    const total = Number(rows.BACKEND?.stot ?? 0);
    const requests = this.#lastTotal === undefined ? 0 : Math.max(0, total - this.#lastTotal);
    this.#lastTotal = total;
    const hosts = appNames(state);
    const urls = hosts.map((app) => `http://${state.hosts[app]?.address}:${APP_METRICS_PORT}/metrics`);
    const curl = Bun.spawn(
      ["ip", "netns", "exec", state.hosts.lb?.namespace as string, "curl", "-s", "--max-time", "2", "-w", "\n#END\n", ...urls],
      { stdout: "pipe", stderr: "ignore" },
    );
    const bodies = (await new Response(curl.stdout).text()).split("\n#END\n");
    await curl.exited;
    const delta = new Map<number, number>();
    const next = new Map<string, Map<number, number>>();
    hosts.forEach((app, i) => {
      const current = parseTurnBuckets(bodies[i] ?? "");
      if (current.size === 0) return; // not answering (starting, draining): no data this round
      next.set(app, current);
      const previous = this.#last.get(app);
      if (previous === undefined) return;
      for (const [bound, count] of current) {
        delta.set(bound, (delta.get(bound) ?? 0) + Math.max(0, count - (previous.get(bound) ?? 0)));
      }
    });
    this.#last = next;
    return { p99Ms: p99FromBuckets(delta), requests };
  }
}

export interface AutoscaleOptions {
  readonly policy: Policy;
  /** Time between samples (ms). Default 1000. */
  readonly intervalMs?: number;
  /** Stop after this long (s); undefined = until `signal` aborts. */
  readonly durationS?: number;
  readonly signal?: AbortSignal;
  /** Where decisions go (one line each). Default stdout. */
  readonly print?: (line: string) => void;
}

export interface DecisionRecord {
  readonly time: string;
  readonly action: "out" | "in" | "hold";
  readonly reason: string;
  readonly hosts: string[];
  readonly cpu: Record<string, number>;
  readonly p99Ms: number | undefined;
  readonly requests: number;
  /** For out/in: the host added or removed and how long the action took. */
  readonly host?: string;
  readonly tookMs?: number;
  readonly error?: string;
}

/**
 * The control loop. Every decision (holds too) goes to `<stateDir>/autoscaler.jsonl`; scale actions
 * and changes of reason are printed. One action at a time: the loop waits for a host to be ready (or
 * drained and gone) before it samples again. Returns the final state; the topology stays up.
 */
export async function autoscale(initial: ClusterState, options: AutoscaleOptions): Promise<ClusterState> {
  const { policy } = options;
  const intervalMs = options.intervalMs ?? 1000;
  const print = options.print ?? ((line: string) => void process.stdout.write(`${line}\n`));
  validatePolicy(policy, initial.slots ?? initial.apps);
  const log = join(initial.stateDir, "autoscaler.jsonl");
  const endAt = options.durationS === undefined ? Number.POSITIVE_INFINITY : performance.now() + options.durationS * 1000;
  const cpuMeter = new CpuMeter();
  const latencyMeter = new LatencyMeter();
  let state = initial;
  let memory = INITIAL_MEMORY;
  let lastReason = "";
  cpuMeter.sample(state);
  await latencyMeter.sample(state);
  print(
    `autoscale '${state.name}': ${appNames(state).length} hosts, min ${policy.min} max ${policy.max}, out at cpu ${policy.scaleOutCpu}${policy.p99Ms > 0 ? ` or p99 ${policy.p99Ms} ms` : ""}, in at cpu ${policy.scaleInCpu}`,
  );
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      options.signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  while (!options.signal?.aborted && performance.now() < endAt) {
    await sleep(Math.min(intervalMs, Math.max(0, endAt - performance.now())));
    if (options.signal?.aborted || performance.now() >= endAt) break;
    const perHost = cpuMeter.sample(state);
    const { p99Ms, requests } = await latencyMeter.sample(state);
    const hosts = appNames(state);
    const cpu = hosts.length === 0 ? 0 : Object.values(perHost).reduce((a, b) => a + b, 0) / hosts.length;
    const decision = decide({ at: performance.now(), hosts: hosts.length, cpu, p99Ms }, policy, memory);
    memory = decision.memory;
    const base = {
      time: new Date().toISOString(),
      action: decision.action,
      reason: decision.reason,
      hosts,
      cpu: Object.fromEntries(Object.entries(perHost).map(([k, v]) => [k, Math.round(v * 1000) / 1000])),
      p99Ms,
      requests,
    };
    if (decision.action === "hold") {
      appendFileSync(log, `${JSON.stringify(base)}\n`);
      // Printed when the kind of reason changes (numbers aside); every sample is in the log file.
      const kind = decision.reason.replace(/^.*?: /, "").replace(/[\d.]+/g, "#");
      if (kind !== lastReason) print(`${base.time} hold: ${decision.reason}`);
      lastReason = kind;
      continue;
    }
    lastReason = "";
    const started = performance.now();
    let record: DecisionRecord;
    try {
      if (decision.action === "out") {
        const added = await addAppHost(state);
        state = added.state;
        record = { ...base, host: added.host, tookMs: Math.round(performance.now() - started) };
      } else {
        const victim = scaleInCandidate(state);
        state = await removeAppHost(state, victim);
        record = { ...base, host: victim, tookMs: Math.round(performance.now() - started) };
      }
    } catch (error) {
      record = { ...base, error: error instanceof Error ? error.message : String(error) };
    }
    memory = afterScale(performance.now());
    appendFileSync(log, `${JSON.stringify(record)}\n`);
    print(
      `${record.time} scale-${decision.action} ${record.host ?? ""}${record.error === undefined ? ` in ${record.tookMs} ms` : ` FAILED: ${record.error}`}: ${decision.reason} -> ${appNames(state).length} hosts`,
    );
  }
  print(`autoscale '${state.name}': stopped with ${appNames(state).length} hosts (${appNames(state).join(", ")})`);
  return state;
}

/** The host a scale-in removes: the highest-numbered one, so slots fill and empty from the top. */
export function scaleInCandidate(state: ClusterState): string {
  const apps = appNames(state).sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  const last = apps.at(-1);
  if (last === undefined) throw new RangeError(`cluster '${state.name}' has no app host to remove.`);
  return last;
}

if (import.meta.main) moduleOfTheClusterTool("scripts/cluster/autoscaler.ts");
