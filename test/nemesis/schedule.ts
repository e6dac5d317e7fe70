/**
 * The nemesis schedule: which fault starts when, on what, for how long, drawn from a seeded PRNG so
 * that the same seed (and the same options) gives the same schedule. Pure: no I/O, no clock.
 *
 * Faults overlap. Each kind holds resources while it lasts (an app host's processes, an app host's
 * network, the Redis data servers, the Redis network) and the schedule never starts a fault on a
 * resource another planned fault still holds, so every fault has a defined heal. At run time a fault
 * whose resources are still held (a heal that took longer than planned) waits for them; the runner
 * logs the delay.
 */

/** mulberry32: small, fast, good enough for schedules; the same seed gives the same sequence. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Store = "sentinel" | "cluster";

export const FAULT_KINDS = [
  "app-kill",
  "app-pause",
  "worker-kill",
  "worker-pause",
  "redis-kill",
  "redis-empty",
  "failover",
  "part-app-redis",
  "part-lb-app",
  "slow-link",
  "rolling-restart",
  "admin",
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export const FAULT_HELP: Record<FaultKind, string> = {
  "app-kill": "kill -9 every process of one app host; started again after the fault",
  "app-pause": "SIGSTOP every process of one app host, SIGCONT after 0.5-3 s",
  "worker-kill": "kill -9 one worker of one app host (its supervisor starts a new one)",
  "worker-pause": "SIGSTOP one worker, SIGCONT after 0.5-3 s",
  "redis-kill": "kill -9 the Redis primary (a Cluster: one shard's); restarted from its AOF",
  "redis-empty":
    "the primary (a Cluster: one shard's) restarted empty before a failover (its replicas copy the empty data set); the service must refuse, the run then recovers it (POST /admin/store/recover)",
  failover: "SENTINEL FAILOVER (Cluster: CLUSTER FAILOVER on a replica)",
  "part-app-redis": "one app host cut from Redis: out (app->redis), in (redis->app) or both ways",
  "part-lb-app": "the LB cut from one app host: out (lb->app), in (app->lb) or both ways",
  "slow-link": "a slow link on one app host or on Redis (tc tbf: low rate, deep queue, drops)",
  "rolling-restart": "SIGTERM, drain, start, one app host after the other",
  admin: "admin set (PUT) or reset (DELETE) of an id at random moments, by the workload",
};

/** Kinds that the workload performs itself (its own PRNG stream of the same seed). */
export const WORKLOAD_KINDS: readonly FaultKind[] = ["admin"];

export type Direction = "out" | "in" | "both";

export interface PlannedFault {
  /** Index in the schedule (stable for a seed). */
  readonly n: number;
  readonly kind: FaultKind;
  /** Start, ms after the run's start. */
  readonly atMs: number;
  /** How long the fault lasts before its heal starts (ms). */
  readonly durationMs: number;
  /** App host (app1..), "redis" for a slow Redis link, or "all" (rolling restart, Redis faults). */
  readonly target: string;
  /** Partitions: which way traffic is dropped. */
  readonly direction?: Direction;
  /** worker-kill / worker-pause: which worker (index among the host's workers, modulo their count). */
  readonly worker?: number;
  /** slow-link: tbf rate in kbit/s. */
  readonly rateKbit?: number;
}

export interface ScheduleOptions {
  readonly seed: number;
  readonly durationMs: number;
  readonly apps: number;
  readonly faults: readonly FaultKind[];
  readonly store: Store;
  /** Quiet load at the start (ms). Default 4000. */
  readonly warmupMs?: number;
  /** No fault starts in the last tailMs (ms): everything is healed and the load runs clean. Default 12000. */
  readonly tailMs?: number;
  /** Mean time between two fault starts (ms). Default 2500. */
  readonly meanGapMs?: number;
}

export function parseFaults(list: string): FaultKind[] {
  const kinds = list
    .split(",")
    .map((k) => k.trim())
    .filter((k) => k !== "");
  for (const kind of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(kind))
      throw new RangeError(`unknown fault '${kind}'; known: ${FAULT_KINDS.join(", ")}`);
  }
  if (kinds.length === 0) throw new RangeError("--faults needs at least one fault kind");
  return kinds as FaultKind[];
}

/** Resources a planned fault holds while it lasts (and during its heal). */
export function resourcesOf(fault: Pick<PlannedFault, "kind" | "target">, apps: number): string[] {
  const all = Array.from({ length: apps }, (_, i) => `proc:app${i + 1}`);
  switch (fault.kind) {
    case "app-kill":
    case "app-pause":
    case "worker-kill":
    case "worker-pause":
      return [`proc:${fault.target}`];
    case "rolling-restart":
      return all;
    case "redis-kill":
    case "redis-empty":
    case "failover":
      return ["redis:data"];
    case "part-app-redis":
    case "part-lb-app":
      return [`net:${fault.target}`];
    case "slow-link":
      return [`net:${fault.target}`, `tc:${fault.target}`];
    case "admin":
      return [];
  }
}

/** Planned length of a kind's heal (what the schedule keeps the resources for, after durationMs). */
function healAllowanceMs(kind: FaultKind, apps: number): number {
  switch (kind) {
    case "app-kill":
      return 4000; // start again, /readyz, LB rise
    case "redis-kill":
      return 4000;
    case "redis-empty":
      return 8000; // restart, refusal seen, recovery, readiness
    case "failover":
      return 2000;
    case "rolling-restart":
      return apps * 8000;
    default:
      return 500;
  }
}

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T;
}

function between(random: () => number, low: number, high: number): number {
  return Math.round(low + random() * (high - low));
}

export function buildSchedule(options: ScheduleOptions): PlannedFault[] {
  const random = prng(options.seed);
  const kinds = options.faults.filter((kind) => !WORKLOAD_KINDS.includes(kind));
  const warmupMs = options.warmupMs ?? 4000;
  const lastStart = options.durationMs - (options.tailMs ?? 12_000);
  const meanGapMs = options.meanGapMs ?? 2500;
  const apps = Array.from({ length: options.apps }, (_, i) => `app${i + 1}`);
  const busyUntil = new Map<string, number>();
  const schedule: PlannedFault[] = [];
  let at = warmupMs;
  while (kinds.length > 0) {
    at += Math.round(-Math.log(1 - random()) * meanGapMs);
    if (at >= lastStart) break;
    // Draw a kind and a target; redraw (a bounded number of times) while its resources are busy.
    for (let attempt = 0; attempt < 6; attempt++) {
      const kind = pick(random, kinds);
      const fault = draw(random, kind, apps, schedule.length, at);
      const resources = resourcesOf(fault, options.apps);
      if (resources.some((r) => (busyUntil.get(r) ?? 0) > at)) continue;
      // The ledger is judged over the store's last life (an empty restart wipes it): keep the last
      // 40% of the run free of empty restarts, so that life is long.
      if (kind === "redis-empty" && at > options.durationMs * 0.6) continue;
      const end = at + fault.durationMs + healAllowanceMs(kind, options.apps);
      // Every fault, heal included, ends before the tail: the run ends on a healed system.
      if (end > options.durationMs - 4000) continue;
      for (const r of resources) busyUntil.set(r, end);
      schedule.push(fault);
      break;
    }
  }
  return schedule;
}

function draw(random: () => number, kind: FaultKind, apps: readonly string[], n: number, atMs: number): PlannedFault {
  const app = pick(random, apps);
  const direction = pick(random, ["out", "in", "both"] as const);
  switch (kind) {
    case "app-kill":
      return { n, kind, atMs, durationMs: between(random, 500, 4000), target: app };
    case "app-pause":
    case "worker-pause":
      // Below HAProxy's `timeout server` (5 s) and the clients' timeout: a paused host answers late, not never.
      return { n, kind, atMs, durationMs: between(random, 500, 3000), target: app, worker: between(random, 0, 7) };
    case "worker-kill":
      return { n, kind, atMs, durationMs: 0, target: app, worker: between(random, 0, 7) };
    case "redis-kill":
      return { n, kind, atMs, durationMs: between(random, 500, 5000), target: "all" };
    case "redis-empty":
      return { n, kind, atMs, durationMs: 0, target: "all" };
    case "failover":
      return { n, kind, atMs, durationMs: 0, target: "all" };
    case "part-app-redis":
    case "part-lb-app":
      return { n, kind, atMs, durationMs: between(random, 1000, 6000), target: app, direction };
    case "slow-link":
      return {
        n,
        kind,
        atMs,
        durationMs: between(random, 2000, 8000),
        target: random() < 0.3 ? "redis" : app,
        rateKbit: pick(random, [256, 512, 1024, 4096]),
      };
    case "rolling-restart":
      return { n, kind, atMs, durationMs: 0, target: "all" };
    case "admin":
      return { n, kind, atMs, durationMs: 0, target: "all" };
  }
}

/** One line per planned fault, as printed at the start of a run. */
export function formatFault(fault: PlannedFault): string {
  const parts = [`#${fault.n}`, `t+${(fault.atMs / 1000).toFixed(1)}s`, fault.kind, fault.target];
  if (fault.direction !== undefined && fault.kind.startsWith("part-")) parts.push(fault.direction);
  if (fault.kind.startsWith("worker-")) parts.push(`worker ${fault.worker}`);
  if (fault.rateKbit !== undefined) parts.push(`${fault.rateKbit} kbit/s`);
  if (fault.durationMs > 0) parts.push(`for ${(fault.durationMs / 1000).toFixed(1)}s`);
  return parts.join(" ");
}
