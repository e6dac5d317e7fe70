/**
 * `npm run test:nemesis -- --minutes N --seed S [--faults list] [--store sentinel|cluster]`: a
 * Jepsen-style randomized fault run on the netns topology (scripts/cluster/topology.ts): LB, app hosts
 * with workers, Redis with replicas and Sentinel (or a Redis Cluster) in the redis namespace, and the
 * mixed workload (workload.ts) in the client namespace for the whole run. A schedule drawn from the
 * seed (schedule.ts; printed at the start) overlaps the faults; every fault is healed at the end;
 * then the judge (judge.ts) reads every request and every id's ledger. Exit 0 only without a
 * violation. Everything the run starts, it stops, also on SIGINT/SIGTERM (`down` of its cluster).
 *
 * Run it under `flock /tmp/netns.lock` (needs root, ip, haproxy, redis-server, redis-sentinel, tc).
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  adminToken,
  APP_PORT,
  appNames,
  type ClusterState,
  DRAIN_DELAY_MS,
  down,
  type HostState,
  namespacePids,
  run,
  spawnIn,
  startHost,
  stopHost,
  terminateHost,
  up,
  waitLbState,
  waitReady,
} from "../../scripts/cluster/topology.ts";
import { type ExecutedFault, formatViolation, type Judgement, type JudgeInput, judge, type Recovery } from "./judge.ts";
import { deployRedis, type RedisDeployment, waitUntil } from "./redis-ns.ts";
import {
  buildSchedule,
  FAULT_HELP,
  FAULT_KINDS,
  type FaultKind,
  formatFault,
  type PlannedFault,
  parseFaults,
  resourcesOf,
  type Store,
} from "./schedule.ts";
import type { ClientClass, IdSets, ReadResult, WorkloadOptions, WorkloadResult } from "./workload.ts";

const WORKLOAD = join(import.meta.dir, "workload.ts");
const LEDGER_FLUSH_MS = 1000;
/** The service's default Redis key prefix (TURNOMATIC_REDIS_KEY_PREFIX). */
const KEY_PREFIX = "turnomatic:";
/** A fault that cannot start within this long of its planned time (its resources still held) is skipped. */
const START_SLACK_MS = 10_000;
/** The bogus MAC a partitioned host's neighbour entry points at: frames to it reach nobody. */
const NOWHERE_MAC = "02:00:00:00:00:01";

export interface NemesisOptions {
  readonly minutes: number;
  readonly seed: number;
  readonly faults: readonly FaultKind[];
  readonly store: Store;
  readonly apps: number;
  readonly workers: number;
  readonly name: string;
  /** Result file (JSON); default none. */
  readonly out?: string;
  /** Copy the Redis, Sentinel and app host logs into this folder before the topology is removed. */
  readonly logs?: string;
  /** Fewer clients (the suite's short variant on a shared machine). */
  readonly clients?: { raw: number; fetch: number; keyed: number; batch: number };
  /**
   * Negative control: after each Redis empty restart, every app host also forgets its record of the
   * store (its witness, the documented undetectable case) and restarts, so the service re-issues
   * numbers: the judge must find duplicates.
   */
  readonly amnesia?: boolean;
  readonly log?: (line: string) => void;
}

export interface NemesisReport {
  readonly seed: number;
  readonly store: Store;
  readonly minutes: number;
  readonly faultsEnabled: readonly FaultKind[];
  readonly schedule: readonly PlannedFault[];
  readonly executed: readonly ExecutedFault[];
  /** Planned faults not run: their resources were still held long after their planned start. */
  readonly skipped: readonly number[];
  readonly recoveries: readonly Recovery[];
  readonly rollbackRecoveries: ReadonlyArray<{ at: number; floor: number; reason: string }>;
  readonly adminOps: number;
  /** Admin operations by kind: set, reset, daily (a daily reset across its boundary). */
  readonly adminOpsByKind: Record<string, number>;
  readonly faultsByKind: Record<string, number>;
  readonly statuses: Record<string, number>;
  readonly codes: Record<string, number>;
  readonly byClass: Record<string, number>;
  readonly judgement: Omit<Judgement, "ledger"> & {
    ledgerTotals: { issued: number; delivered: number; lost: number; unseen: number; overcount: number; bound: number };
  };
  readonly violationsText: readonly string[];
  readonly startedAt: string;
  readonly wallSeconds: number;
}

export const USAGE = `usage: npm run test:nemesis -- --minutes N --seed S [options]

A randomized fault run (Jepsen-style) on the netns topology: LB, app hosts, Redis with replicas and
Sentinel (or a Redis Cluster), a mixed workload through the LB for the whole run, overlapping faults
drawn from the seed (the same seed gives the same schedule, printed at the start), every fault healed
at the end, then the history checker over every request and the ledger of every id. Exit 0 only when
nothing was violated. Needs root; run it under flock /tmp/netns.lock.

options:
  --minutes N        length of the run (default 1; fractions allowed, e.g. 0.5)
  --seed S           seed of the schedule and of the workload (default: random, printed)
  --faults LIST      comma-separated fault kinds (default: all that fit the store)
  --store KIND       sentinel (default) or cluster
  --apps N           app hosts (default 2)
  --workers N        worker processes per app host (default 2)
  --name NAME        cluster name (default nemesis)
  --out FILE         write the run's report (JSON) there
  --logs DIR         copy the Redis, Sentinel and app host logs there before the topology goes, and
                     what the judge read (judge-input.json)
  --rejudge FILE     judge a kept judge-input.json again (after a change to the judge) and exit
  --negative-control after each empty restart the app hosts also forget the store (their witness):
                     the service re-issues numbers and the judge must report duplicates
  --help             this text

fault kinds:
${FAULT_KINDS.map((k) => `  ${k.padEnd(16)} ${FAULT_HELP[k]}`).join("\n")}
`;

export function parseArgs(argv: readonly string[]): NemesisOptions | "help" | { readonly rejudge: string } {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--help" || arg === "-h") return "help";
    if (arg === "--negative-control") {
      flags.add(arg);
      continue;
    }
    if (!arg.startsWith("--")) throw new RangeError(`unexpected argument '${arg}'`);
    const value = argv[i + 1];
    if (value === undefined) throw new RangeError(`${arg} needs a value`);
    values.set(arg, value);
    i++;
  }
  const known = ["--minutes", "--seed", "--faults", "--store", "--apps", "--workers", "--name", "--out", "--logs", "--rejudge"];
  for (const key of values.keys()) if (!known.includes(key)) throw new RangeError(`unknown option '${key}'`);
  const rejudgeFile = values.get("--rejudge");
  if (rejudgeFile !== undefined) {
    if (values.size > 1 || flags.size > 0) throw new RangeError("--rejudge takes no other option");
    return { rejudge: rejudgeFile };
  }
  const number = (key: string, fallback: number, low: number, high: number) => {
    const raw = values.get(key);
    const n = raw === undefined ? fallback : Number(raw);
    if (!Number.isFinite(n) || n < low || n > high)
      throw new RangeError(`${key} must be a number from ${low} to ${high}; got '${raw}'`);
    return n;
  };
  const store = values.get("--store") ?? "sentinel";
  if (store !== "sentinel" && store !== "cluster") throw new RangeError(`--store must be sentinel or cluster; got '${store}'`);
  const faults = values.has("--faults") ? parseFaults(values.get("--faults") as string) : [...FAULT_KINDS];
  const seed = values.has("--seed") ? number("--seed", 0, 0, 2 ** 32 - 1) : Math.floor(Math.random() * 2 ** 31);
  if (!Number.isInteger(seed)) throw new RangeError("--seed must be an integer");
  return {
    minutes: number("--minutes", 1, 0.25, 24 * 60),
    seed,
    faults,
    store,
    apps: number("--apps", 2, 2, 8),
    workers: number("--workers", 2, 1, 8),
    name: values.get("--name") ?? "nemesis",
    ...(values.has("--out") ? { out: values.get("--out") as string } : {}),
    ...(values.has("--logs") ? { logs: values.get("--logs") as string } : {}),
    amnesia: flags.has("--negative-control"),
  };
}

const wallNow = () => performance.timeOrigin + performance.now();

function idSets(seed: number): IdSets {
  const tag = seed.toString(36);
  const list = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `nm-${prefix}-${tag}-${i}`);
  return {
    raw: list("raw", 26),
    fetch: list("fetch", 26),
    keyed: list("keyed", 26),
    admin: list("admin", 3),
    batch: list("batch", 26),
    hot: 2,
  };
}

function hostOf(state: ClusterState, name: string): HostState {
  return state.hosts[name] as HostState;
}

function ipIn(state: ClusterState, host: string, ...args: string[]): string {
  return run(["ip", "-n", hostOf(state, host).namespace, ...args], true);
}

function tcIn(state: ClusterState, host: string, ...args: string[]): string {
  return run(["ip", "netns", "exec", hostOf(state, host).namespace, "tc", ...args], true);
}

/** Drop every frame `from` sends to `to` (a one-way partition): its neighbour entry points nowhere. */
function cut(state: ClusterState, from: string, to: string): void {
  ipIn(
    state,
    from,
    "neigh",
    "replace",
    hostOf(state, to).address as string,
    "lladdr",
    NOWHERE_MAC,
    "dev",
    "eth0",
    "nud",
    "permanent",
  );
}

function uncut(state: ClusterState, from: string, to: string): void {
  ipIn(state, from, "neigh", "del", hostOf(state, to).address as string, "dev", "eth0");
}

function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return 0;
  }
}

/** An app host's worker pids (children of its supervisor), lowest first. */
function workersOf(state: ClusterState, app: string): number[] {
  const pids = namespacePids(hostOf(state, app).namespace);
  return pids.filter((pid) => pids.includes(parentOf(pid))).sort((a, b) => a - b);
}

function signalAll(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone already.
    }
  }
}

async function waitAppUp(state: ClusterState, app: string, log: (line: string) => void): Promise<void> {
  try {
    await waitReady(state, [`http://${hostOf(state, app).address}:${APP_PORT}/readyz`], 15_000);
    await waitLbState(state, [app], "UP", 10_000);
  } catch (error) {
    // Not fatal here: the store may be refusing (readiness fails) until a recovery; the final heal waits again.
    log(`  (${app} not ready yet: ${(error as Error).message.split("\n")[0]})`);
  }
}

function startApp(state: ClusterState, app: string): void {
  if (namespacePids(hostOf(state, app).namespace).length === 0) startHost(state, app);
}

async function curlInClient(state: ClusterState, args: readonly string[]): Promise<{ code: number; body: string }> {
  const child = spawnIn(state, "client", ["curl", "-s", "-m", "5", "-w", "\n%{http_code}", ...args], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const text = await new Response(child.stdout as ReadableStream<Uint8Array>).text();
  await child.exited;
  const at = text.lastIndexOf("\n");
  return { code: Number(text.slice(at + 1)), body: text.slice(0, at) };
}

interface Runtime {
  readonly state: ClusterState;
  readonly redis: RedisDeployment;
  readonly token: string;
  readonly log: (line: string) => void;
  readonly recoveries: Recovery[];
  /** Recoveries of a store that went backwards (halted), made by the final heal. */
  readonly rollbackRecoveries: Array<{ at: number; floor: number; reason: string }>;
  readonly amnesia: boolean;
  readonly seed: number;
}

/** Runs one fault from start to heal; returns what happened. */
async function execute(rt: Runtime, fault: PlannedFault): Promise<string> {
  const { state, redis } = rt;
  const app = fault.target;
  switch (fault.kind) {
    case "app-kill": {
      const pids = stopHost(state, app);
      await Bun.sleep(fault.durationMs);
      await waitUntil(`${app} is gone`, 10_000, async () => namespacePids(hostOf(state, app).namespace).length === 0);
      startApp(state, app);
      await waitAppUp(state, app, rt.log);
      return `killed ${pids.length} processes`;
    }
    case "app-pause": {
      const pids = namespacePids(hostOf(state, app).namespace);
      signalAll(pids, "SIGSTOP");
      await Bun.sleep(fault.durationMs);
      signalAll(pids, "SIGCONT");
      return `paused ${pids.length} processes`;
    }
    case "worker-kill":
    case "worker-pause": {
      const workers = workersOf(state, app);
      const pid = workers[(fault.worker ?? 0) % Math.max(1, workers.length)];
      if (pid === undefined) return "no worker running";
      if (fault.kind === "worker-kill") {
        signalAll([pid], "SIGKILL");
        return `killed worker ${pid}`;
      }
      signalAll([pid], "SIGSTOP");
      await Bun.sleep(fault.durationMs);
      signalAll([pid], "SIGCONT");
      return `paused worker ${pid}`;
    }
    case "redis-kill": {
      const primaries = await redis.primaries();
      const port = primaries[fault.n % Math.max(1, primaries.length)];
      if (port === undefined) return "no primary";
      redis.kill(port);
      await Bun.sleep(fault.durationMs);
      await redis.restart(port);
      await redis.waitHealthy(30_000).catch((e: Error) => rt.log(`  (redis not whole yet: ${e.message})`));
      return `killed primary :${port}, restarted from its AOF`;
    }
    case "redis-empty":
      return emptyRestart(rt, fault.n);
    case "failover": {
      const answer = await redis.failover();
      await Bun.sleep(1000);
      await redis.waitHealthy(30_000).catch((e: Error) => rt.log(`  (redis not whole yet: ${e.message})`));
      return `failover: ${answer.replaceAll("\n", " ")}; primaries now ${(await redis.primaries()).join(",")}`;
    }
    case "part-app-redis":
    case "part-lb-app": {
      const other = fault.kind === "part-app-redis" ? "redis" : "lb";
      const pairs: Array<[string, string]> = [];
      // "out": the app's (or the LB's) own packets are dropped; "in": the other side's.
      const outward: [string, string] = fault.kind === "part-app-redis" ? [app, other] : [other, app];
      const inward: [string, string] = [outward[1], outward[0]];
      if (fault.direction !== "in") pairs.push(outward);
      if (fault.direction !== "out") pairs.push(inward);
      for (const [from, to] of pairs) cut(state, from, to);
      await Bun.sleep(fault.durationMs);
      for (const [from, to] of pairs) uncut(state, from, to);
      return `dropped ${pairs.map(([a, b]) => `${a}->${b}`).join(", ")}`;
    }
    case "slow-link": {
      const rate = fault.rateKbit ?? 512;
      tcIn(
        state,
        fault.target,
        "qdisc",
        "replace",
        "dev",
        "eth0",
        "root",
        "tbf",
        "rate",
        `${rate}kbit`,
        "burst",
        "16kbit",
        "latency",
        "300ms",
      );
      await Bun.sleep(fault.durationMs);
      tcIn(state, fault.target, "qdisc", "del", "dev", "eth0", "root");
      return `tbf ${rate} kbit/s, 300 ms queue`;
    }
    case "rolling-restart": {
      for (const name of appNames(state)) {
        if (!(await terminateHost(state, name, DRAIN_DELAY_MS + 15_000))) stopHost(state, name);
        startApp(state, name);
        await waitAppUp(state, name, rt.log);
      }
      return `restarted ${appNames(state).join(", ")}`;
    }
    case "admin":
      return "done by the workload";
  }
}

/**
 * The primary killed, its files deleted, started again at once (before Sentinel's down-after): its
 * replicas copy the empty data set. The service must refuse; then the operator's recovery (runbook
 * TurnomaticStoreRefusing) with a floor above every number ever issued.
 */
async function emptyRestart(rt: Runtime, n: number): Promise<string> {
  const { redis, state } = rt;
  const primaries = await redis.primaries();
  const port = primaries[n % Math.max(1, primaries.length)];
  if (port === undefined) return "no primary";
  // No failover meanwhile: on a loaded machine a restart may take longer than the sentinels'
  // down-after or the Cluster's node timeout (1 s), and a failover would turn the fault into a plain
  // kill. The sentinels are paused; a Cluster primary's replica may not take over.
  redis.pauseSentinels(true);
  await redis.holdFailover(port, true);
  const lossAt = wallNow();
  let lost = false;
  let keys = "?";
  // A Cluster shard's loss wipes the counters (and their ledgers) of its slots only.
  const slots = await redis.slotsOf(port);
  try {
    redis.kill(port);
    await Bun.sleep(50);
    redis.wipe(port);
    await redis.restart(port, { asPrimary: true });
    await waitUntil(`:${port} answers again`, 10_000, async () => (await redis.cli(port, "PING")) === "PONG");
    // Its replicas reconnect and copy the empty data set.
    const replicas = redis.store === "sentinel" ? 2 : 1;
    await waitUntil("the replicas copied the empty primary", 10_000, async () => {
      const info = await redis.cli(port, "INFO", "replication");
      return (info.match(/state=online/g) ?? []).length === replicas;
    }).catch(() => {});
    keys = await redis.cli(port, "DBSIZE");
    // Sentinel: the store's marker is gone. Cluster: the node came back as a primary with no keys
    // (each slot's marker went with them).
    lost =
      redis.store === "sentinel"
        ? (await redis.cli(port, "EXISTS", `${KEY_PREFIX}marker`)) === "0"
        : keys === "0" && (await redis.primaries()).includes(port);
  } finally {
    redis.pauseSentinels(false);
    await redis.holdFailover(port, false).catch(() => {});
  }
  if (!lost) {
    await redis.waitHealthy(30_000).catch(() => {});
    return `degenerated: no loss (${keys} keys)`;
  }
  if (rt.amnesia) {
    // Negative control: the app hosts forget the store and start again: nothing can tell the loss.
    for (const app of appNames(state)) {
      stopHost(state, app);
      await waitUntil(`${app} is gone`, 10_000, async () => namespacePids(hostOf(state, app).namespace).length === 0);
      run(["rm", "-rf", join(state.stateDir, app, "state")]);
      startApp(state, app);
    }
    for (const app of appNames(state)) await waitAppUp(state, app, rt.log);
    return `primary :${port} restarted empty (${keys} keys); app hosts restarted without their witness (negative control)`;
  }
  // The refusal is seen at the next reservation (a turn request, or the readiness probe's write).
  const apps = appNames(state).map((a) => `http://${hostOf(state, a).address}:${APP_PORT}`);
  let refused = "";
  await waitUntil("the service refuses the emptied store", 15_000, async () => {
    for (const url of apps) {
      const answer = await curlInClient(state, [`${url}/readyz`]);
      if (answer.code === 503 && answer.body.includes("store")) refused = answer.body.slice(0, 200);
    }
    return refused !== "";
  }).catch(() => {});
  const floor = await operatorRecovery(rt);
  rt.recoveries.push({ lossAt, at: wallNow(), floor, ...(slots === undefined ? {} : { slots }) });
  await redis.waitHealthy(30_000).catch(() => {});
  return `primary :${port} restarted empty (${keys} keys); ${refused === "" ? "refusal not seen on /readyz" : "refused"}; recovered with floor ${floor}`;
}

/**
 * The operator's recovery (runbook TurnomaticStoreRefusing), sent to an app host directly (the
 * runbook: "to any host"): a refusing host fails its readiness, so the LB may have no server to
 * offer. The floor is k x 10^9 for the k-th recovery, above every number ever issued.
 */
async function operatorRecovery(rt: Runtime): Promise<number> {
  const { state } = rt;
  const apps = appNames(state).map((a) => `http://${hostOf(state, a).address}:${APP_PORT}`);
  const floor = (rt.recoveries.length + rt.rollbackRecoveries.length + 1) * 1_000_000_000;
  let accepted = false;
  const until = performance.now() + 60_000;
  let last = "";
  while (!accepted && performance.now() < until) {
    for (const url of apps) {
      const answer = await curlInClient(state, [
        "-X",
        "POST",
        "-H",
        `Authorization: Bearer ${rt.token}`,
        "-H",
        "content-type: application/json",
        "-d",
        JSON.stringify({ floor }),
        `${url}/admin/store/recover`,
      ]);
      last = `${url}: ${answer.code} ${answer.body.slice(0, 200)}`;
      if (answer.code === 200) {
        accepted = true;
        break;
      }
    }
    if (!accepted) await Bun.sleep(500);
  }
  if (!accepted) throw new Error(`recovery with floor ${floor} was never accepted: ${last}`);
  return floor;
}

/** Heals everything, whatever state the faults left: processes resumed and started, links and queues restored. */
async function healAll(rt: Runtime): Promise<void> {
  const { state, redis } = rt;
  for (const host of Object.values(state.hosts)) {
    if (host.role === "net") continue;
    run(["ip", "-n", host.namespace, "neigh", "flush", "nud", "permanent"], true);
    tcIn(state, host.name, "qdisc", "del", "dev", "eth0", "root");
  }
  for (const app of appNames(state)) signalAll(namespacePids(hostOf(state, app).namespace), "SIGCONT");
  redis.pauseSentinels(false);
  for (const port of redis.ports) if (!redis.running(port)) await redis.restart(port);
  await redis.waitHealthy(60_000);
  for (const app of appNames(state)) startApp(state, app);
  // A store that went backwards (a failover to a replica without every acknowledged reservation)
  // is halted until an operator recovers it: the heal does, as the runbook says, and reports it.
  await Bun.sleep(2000);
  for (const app of appNames(state)) {
    const answer = await curlInClient(state, [`http://${hostOf(state, app).address}:${APP_PORT}/readyz`]);
    if (answer.code === 503 && /went backwards|lost its data/.test(answer.body)) {
      const floor = await operatorRecovery(rt);
      rt.rollbackRecoveries.push({ at: wallNow(), floor, reason: answer.body.slice(0, 300) });
      rt.log(`heal: the store was refusing (${answer.body.slice(0, 200)}); recovered with floor ${floor}`);
      break;
    }
  }
  await waitReady(
    state,
    [...appNames(state).map((a) => `http://${hostOf(state, a).address}:${APP_PORT}/readyz`), `${state.lbUrl}/readyz`],
    60_000,
  );
  await waitLbState(state, appNames(state), "UP", 30_000);
}

function count<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

export async function runNemesis(options: NemesisOptions): Promise<NemesisReport> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const durationMs = Math.round(options.minutes * 60_000);
  const schedule = buildSchedule({
    seed: options.seed,
    durationMs,
    apps: options.apps,
    faults: options.faults,
    store: options.store,
  });
  log(
    `nemesis: seed ${options.seed}, store ${options.store}, ${options.minutes} min, ${options.apps} app hosts x ${options.workers} workers`,
  );
  log(`faults: ${options.faults.join(",")}${options.amnesia ? " (negative control: amnesia after empty restarts)" : ""}`);
  log(
    `schedule (${schedule.length} faults${options.faults.includes("admin") ? " + admin set/reset and daily resets by the workload" : ""}):`,
  );
  for (const fault of schedule) log(`  ${formatFault(fault)}`);
  const startedAtIso = new Date().toISOString();
  const wallStart = performance.now();
  // The app hosts the run starts (also those it restarts) flush their ledger reports this often; put
  // back as it was when the run ends, for whatever runs next in this process (the test suite).
  const previousFlushMs = process.env.TURNOMATIC_LEDGER_FLUSH_MS;
  const restoreFlushMs = () => {
    if (previousFlushMs === undefined) delete process.env.TURNOMATIC_LEDGER_FLUSH_MS;
    else process.env.TURNOMATIC_LEDGER_FLUSH_MS = previousFlushMs;
  };
  process.env.TURNOMATIC_LEDGER_FLUSH_MS = String(LEDGER_FLUSH_MS);
  down(options.name);
  let redis: RedisDeployment | undefined;
  const state = await up({
    name: options.name,
    apps: options.apps,
    workers: options.workers,
    externalStore: async (s) => {
      redis = await deployRedis(s, options.store);
      return redis.url;
    },
  }).catch((error: unknown) => {
    restoreFlushMs();
    throw error;
  });
  try {
    if (redis === undefined) throw new Error("the Redis deployment did not start");
    const token = adminToken(state);
    if (token === undefined) throw new Error("the cluster has no admin token");
    const rt: Runtime = {
      state,
      redis,
      token,
      log,
      recoveries: [],
      rollbackRecoveries: [],
      amnesia: options.amnesia === true,
      seed: options.seed,
    };
    const ids = idSets(options.seed);
    const out = join(state.stateDir, "nemesis-history.json");
    const workloadOptions: WorkloadOptions = {
      url: state.lbUrl,
      adminToken: token,
      seed: options.seed,
      durationMs,
      ids,
      clients: options.clients ?? { raw: 12, fetch: 8, keyed: 8, batch: 4 },
      admin: options.faults.includes("admin"),
      adminMeanGapMs: 6000,
      adminTailMs: 20_000,
      timeoutMs: 10_000,
      pauseMs: 2,
      out,
    };
    const workload = spawnIn(state, "client", [process.execPath, WORKLOAD, "run", JSON.stringify(workloadOptions)], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const loadStart = wallNow();
    let progress = 0;
    void (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of workload.stdout as ReadableStream<Uint8Array>)
        for (const m of decoder.decode(chunk).matchAll(/progress (\d+)/g)) progress = Number(m[1]);
    })();
    const executed: ExecutedFault[] = [];
    const skipped: number[] = [];
    const held = new Map<string, Promise<void>>();
    const running: Promise<void>[] = [];
    const rel = (t: number) => `t+${((t - loadStart) / 1000).toFixed(1)}s`;
    for (const fault of schedule) {
      const wait = loadStart + fault.atMs - wallNow();
      if (wait > 0) await Bun.sleep(wait);
      const resources = resourcesOf(fault, options.apps);
      const blockers = resources.map((r) => held.get(r)).filter((p) => p !== undefined);
      const task = (async () => {
        if (blockers.length > 0) {
          const waitedFrom = wallNow();
          const free = await Promise.race([Promise.all(blockers).then(() => true), Bun.sleep(START_SLACK_MS).then(() => false)]);
          if (!free) {
            skipped.push(fault.n);
            log(
              `  #${fault.n} ${fault.kind} skipped: its resources were still held ${START_SLACK_MS} ms after its planned start`,
            );
            return;
          }
          log(`  #${fault.n} ${fault.kind} waited ${Math.round(wallNow() - waitedFrom)} ms for its resources`);
        }
        const startAt = wallNow();
        let detail: string;
        try {
          detail = await execute(rt, fault);
        } catch (error) {
          detail = `ERROR ${(error as Error).message}`;
        }
        const endAt = wallNow();
        executed.push({ n: fault.n, kind: fault.kind, target: fault.target, startAt, endAt, detail });
        log(`${rel(startAt)} .. ${rel(endAt)} ${formatFault(fault)}: ${detail} (requests so far ${progress})`);
      })();
      // A skipped fault holds nothing: later faults wait for the holders it waited for.
      for (const r of resources)
        held.set(
          r,
          Promise.all([task, ...blockers]).then(() => {}),
        );
      running.push(task);
    }
    await Promise.all(running);
    const code = await workload.exited;
    if (code !== 0)
      throw new Error(
        `workload exited with ${code}: ${await new Response(workload.stderr as ReadableStream<Uint8Array>).text()}`,
      );
    log(`load done at ${rel(wallNow())}; healing everything`);
    await healAll(rt);
    // Every live process reports its deliveries within a flush interval; give it a few.
    await Bun.sleep(3 * LEDGER_FLUSH_MS + 500);
    const result = JSON.parse(readFileSync(out, "utf8")) as WorkloadResult;
    const allIds = [...ids.raw, ...ids.fetch, ...ids.keyed, ...ids.admin, ...ids.batch];
    const readOut = join(state.stateDir, "nemesis-read.json");
    const reader = spawnIn(
      state,
      "client",
      [process.execPath, WORKLOAD, "read", JSON.stringify({ url: state.lbUrl, adminToken: token, ids: allIds, out: readOut })],
      { stdout: "pipe", stderr: "pipe" },
    );
    if ((await reader.exited) !== 0)
      throw new Error(`reading counters failed: ${await new Response(reader.stderr as ReadableStream<Uint8Array>).text()}`);
    const read = JSON.parse(readFileSync(readOut, "utf8")) as ReadResult;
    const classes = new Map<string, ClientClass>();
    for (const id of ids.raw) classes.set(id, "raw");
    for (const id of ids.fetch) classes.set(id, "fetch");
    for (const id of ids.keyed) classes.set(id, "keyed");
    for (const id of ids.admin) classes.set(id, "admin");
    for (const id of ids.batch) classes.set(id, "batch");
    const judgeInput: JudgeInput = {
      entries: result.entries,
      adminOps: result.adminOps,
      recoveries: rt.recoveries,
      faults: executed,
      ids: classes,
      actual: read.actual,
      ledgers: read.ledgers,
      ledgerFlushMs: LEDGER_FLUSH_MS,
    };
    if (options.logs !== undefined) saveJudgeInput(join(options.logs, JUDGE_INPUT_FILE), judgeInput, loadStart, log);
    const judgement = judge(judgeInput);
    const violationsText = judgement.violations.map((v) => formatViolation(v, executed, loadStart));
    const sum = (pick: (row: Judgement["ledger"][number]) => number) => judgement.ledger.reduce((s, row) => s + pick(row), 0);
    const { ledger: _ledger, ...rest } = judgement;
    const report: NemesisReport = {
      seed: options.seed,
      store: options.store,
      minutes: options.minutes,
      faultsEnabled: options.faults,
      schedule,
      executed: [...executed].sort((a, b) => a.startAt - b.startAt),
      skipped,
      recoveries: rt.recoveries,
      rollbackRecoveries: rt.rollbackRecoveries,
      adminOps: result.adminOps.length,
      adminOpsByKind: count(result.adminOps, (op) => op.op),
      faultsByKind: {
        ...count(executed, (f) => f.kind),
        ...(result.adminOps.length > 0 ? { admin: result.adminOps.length } : {}),
      },
      statuses: count(result.entries, (e) => String(e.status)),
      codes: count(
        result.entries.filter((e) => e.status !== 200),
        (e) => e.code ?? (e.status === 0 ? "no answer" : `HTTP ${e.status}`),
      ),
      byClass: count(result.entries, (e) => e.cls),
      judgement: {
        ...rest,
        ledgerTotals: {
          issued: sum((r) => r.issued),
          delivered: sum((r) => r.delivered),
          lost: sum((r) => r.lost),
          unseen: sum((r) => r.unseen),
          overcount: sum((r) => r.overcount),
          bound: sum((r) => r.bound),
        },
      },
      violationsText,
      startedAt: startedAtIso,
      wallSeconds: Math.round((performance.now() - wallStart) / 1000),
    };
    printSummary(report, log);
    if (options.out !== undefined) {
      mkdirSync(join(options.out, ".."), { recursive: true });
      writeFileSync(options.out, `${JSON.stringify(report, null, 2)}\n`);
      log(`report written to ${options.out}`);
    }
    return report;
  } finally {
    if (options.logs !== undefined) keepLogs(state.stateDir, options.logs, log);
    down(options.name);
    restoreFlushMs();
  }
}

/** Where --logs keeps what the judge read, for `--rejudge` after a change to the judge. */
const JUDGE_INPUT_FILE = "judge-input.json";

interface SavedJudgeInput extends Omit<JudgeInput, "ids"> {
  readonly ids: ReadonlyArray<readonly [string, ClientClass]>;
  readonly loadStart: number;
}

function saveJudgeInput(file: string, input: JudgeInput, loadStart: number, log: (line: string) => void): void {
  mkdirSync(join(file, ".."), { recursive: true });
  const saved: SavedJudgeInput = { ...input, ids: [...input.ids], loadStart };
  writeFileSync(file, JSON.stringify(saved));
  log(`judge input (${input.entries.length} attempts) written to ${file}`);
}

/** Judges a run again from the input --logs kept; prints the violations; true when there are none. */
export function rejudge(file: string, log: (line: string) => void): boolean {
  const saved = JSON.parse(readFileSync(file, "utf8")) as SavedJudgeInput;
  const judgement = judge({ ...saved, ids: new Map(saved.ids) });
  for (const v of judgement.violations) log(formatViolation(v, saved.faults, saved.loadStart));
  const t = judgement.totals;
  log(
    `rejudged ${file}: ${judgement.attempts} attempts, ${judgement.judged} judged, ${judgement.violations.length} violations ` +
      `(${t.duplicates} duplicates, ${t.orderViolations} order violations, ${t.gaps} gaps, ${t.failed} failed)`,
  );
  return judgement.ok;
}

/** Copies every *.log of the cluster's state folder (app hosts, HAProxy, Redis, Sentinel) to `dir`. */
function keepLogs(stateDir: string, dir: string, log: (line: string) => void): void {
  mkdirSync(dir, { recursive: true });
  const copied: string[] = [];
  for (const folder of [stateDir, join(stateDir, "nemesis-redis")]) {
    if (!existsSync(folder)) continue;
    for (const name of readdirSync(folder)) {
      if (!name.endsWith(".log")) continue;
      copyFileSync(join(folder, name), join(dir, name));
      copied.push(name);
    }
  }
  log(`logs copied to ${dir}: ${copied.join(", ")}`);
}

function printSummary(report: NemesisReport, log: (line: string) => void): void {
  const j = report.judgement;
  for (const text of report.violationsText.slice(0, 50)) log(text);
  if (report.violationsText.length > 50) log(`... ${report.violationsText.length - 50} more violations`);
  log(`faults injected by kind: ${JSON.stringify(report.faultsByKind)}; skipped: ${report.skipped.length}`);
  log(`admin operations by kind: ${JSON.stringify(report.adminOpsByKind)}`);
  log(
    `recoveries after empty restarts: ${report.recoveries.length}; of a halted store at the heal: ${report.rollbackRecoveries.length}`,
  );
  log(
    `requests: ${j.attempts} attempts, ${j.judged} judged (keyed attempts collapsed per key), ${j.segments} segments; by class ${JSON.stringify(report.byClass)}`,
  );
  log(`statuses: ${JSON.stringify(report.statuses)}; failures by code: ${JSON.stringify(report.codes)}`);
  log(
    `checker: ${j.totals.duplicates} duplicates, ${j.totals.orderViolations} order violations, ${j.totals.outOfRange} out of range, ${j.totals.gaps} gaps vs ${j.totals.failed} failed; ${j.excusedKeyReplays} key replays excused by a store loss`,
  );
  const l = j.ledgerTotals;
  log(
    `ledger: issued ${l.issued}, delivered ${l.delivered}, lost ${l.lost}; unseen ${l.unseen}; overcount ${l.overcount} (bound ${l.bound})`,
  );
  log(`${j.ok ? "NEMESIS OK" : `NEMESIS VIOLATIONS: ${j.violations.length}`} (seed ${report.seed}, store ${report.store})`);
}

if (import.meta.main) {
  let options: ReturnType<typeof parseArgs>;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (options === "help") {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if ("rejudge" in options) {
    try {
      process.exit(rejudge(options.rejudge, (line) => console.log(line)) ? 0 : 1);
    } catch (error) {
      process.stderr.write(`cannot rejudge ${options.rejudge}: ${(error as Error).message}\n`);
      process.exit(2);
    }
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write("test:nemesis builds network namespaces: run it as root, under flock /tmp/netns.lock\n");
    process.exit(2);
  }
  for (const bin of ["ip", "tc", "haproxy", "redis-server", "redis-sentinel", "redis-cli", "curl"]) {
    if (Bun.which(bin) === null) {
      process.stderr.write(`test:nemesis needs '${bin}' on PATH\n`);
      process.exit(2);
    }
  }
  const name = options.name;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: removing cluster ${name}\n`);
      down(name);
      process.exit(130);
    });
  }
  const report = await runNemesis(options);
  process.exit(report.judgement.ok ? 0 : 1);
}
