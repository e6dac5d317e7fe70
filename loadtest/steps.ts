/**
 * `npm run loadtest:steps [-- --steps memory,redis-local,redis-remote,redis-cluster,multi-host]
 *   [--duration 10] [--rate 1000] [--step-seconds 5] [--no-max] [--out DIR]` (--help: the usage)
 *
 * The brief's build-up, one step after the other, with the SAME load settings at every step:
 *
 *   memory         one service on loopback, memory store
 *   redis-local    one service on loopback, redis-server on loopback
 *   redis-remote   one service on loopback, redis-server in a network namespace of ours, reached
 *                  over a veth pair on a private /30 (10.210.0.0/30 by default)
 *   redis-cluster  one service on loopback, a 3+3 Redis Cluster on loopback
 *   multi-host     `npm run cluster -- up --apps 2 --workers 2` (cluster name "ltsteps"): HAProxy,
 *                  2 app hosts x 2 workers, Redis, each in its namespace; the load runs from the
 *                  topology's client namespace (the loadtest CLI's --netns)
 *
 * At every step: turnoload open loop at a fixed rate (verified: full I1-I4 history check), wrk
 * closed loop for throughput (verified), and loadtest:max (unless --no-max). Results go to
 * loadtest/results/ labelled `step=<name>`; render them with `npm run loadtest:report`.
 * Everything a step started is torn down after it, also on an error or SIGINT/SIGTERM. Needs root
 * for the two namespace steps (redis-remote, multi-host). Exits 1 if any verification failed,
 * 2 on bad arguments.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireBinary } from "../harness/binaries.ts";
import { waitFor } from "../harness/ports.ts";
import { startRedisCluster } from "../harness/redis-cluster.ts";
import { startRedis } from "../harness/redis-server.ts";
import { startService } from "../harness/service.ts";
import type { MaxResult } from "./max.ts";
import { listArg, numberArg, parseCommand, runCommand, UsageError } from "../bench/toolkit/cli.ts";
import { type LoadResult, progress } from "./result.ts";

export const STEPS = ["memory", "redis-local", "redis-remote", "redis-cluster", "multi-host"] as const;
export type StepName = (typeof STEPS)[number];

export interface StepsOptions {
  /** Steps to run, in this order (default all five). */
  readonly steps: readonly StepName[];
  /** Seconds of each turnoload and wrk run (default 10). */
  readonly duration: number;
  /** turnoload's open-loop rate in req/s (default 1000). */
  readonly rate: number;
  /** Seconds per loadtest:max step (default 5). */
  readonly stepSeconds: number;
  /** Run loadtest:max at every step (default true; --no-max turns it off). */
  readonly max: boolean;
  /** Result directory (default loadtest/results). */
  readonly out: string;
}

export const STEPS_USAGE = `usage: npm run loadtest:steps -- [options]     (root: two steps create network namespaces)
  --steps LIST        comma-separated, in this order (default ${STEPS.join(",")})
  --duration S        seconds of each turnoload and wrk run (default 10)
  --rate R            turnoload's open-loop rate (default 1000)
  --step-seconds S    seconds per loadtest:max step (default 5)
  --no-max            skip loadtest:max at each step
  --out DIR           result directory (default loadtest/results)
  --help              this text`;

export const STEPS_ARGS = {
  steps: { type: "string" },
  duration: { type: "string" },
  rate: { type: "string" },
  "step-seconds": { type: "string" },
  max: { type: "boolean" },
  out: { type: "string" },
} as const;

/** Parses the arguments; throws UsageError saying what to change. */
export function parseStepsOptions(argv: readonly string[]): StepsOptions {
  const raw = parseCommand({ name: "loadtest:steps", usage: STEPS_USAGE, options: STEPS_ARGS }, argv);
  return stepsOptionsFrom(raw);
}

function stepsOptionsFrom(raw: {
  steps?: string;
  duration?: string;
  rate?: string;
  "step-seconds"?: string;
  max?: boolean;
  out?: string;
}): StepsOptions {
  const steps = listArg(raw.steps ?? STEPS.join(","));
  for (const step of steps)
    if (!(STEPS as readonly string[]).includes(step))
      throw new UsageError(`--steps: unknown step '${step}'; use a comma-separated list of: ${STEPS.join(", ")}`);
  if (steps.length === 0) throw new UsageError(`--steps is empty; use a comma-separated list of: ${STEPS.join(", ")}`);
  return {
    steps: steps as StepName[],
    duration: numberArg(raw.duration, "duration", 10, 1, 600),
    rate: numberArg(raw.rate, "rate", 1000, 1, 1_000_000),
    stepSeconds: numberArg(raw["step-seconds"], "step-seconds", 5, 1, 60),
    max: raw.max ?? true,
    out: raw.out ?? join(import.meta.dir, "results"),
  };
}

/** A running setup: where to send load, from which namespace, whose CPU to watch. */
interface Setup {
  readonly target: string;
  readonly netns: string | undefined;
  /** `name:pid+pid` entries for loadtest:max's --pids. */
  readonly watch: string[];
  readonly note: string;
}

type Cleanup = () => Promise<unknown> | unknown;

/** Runs a command and throws with its output when it fails (setup commands must not fail quietly). */
function sh(argv: readonly string[], allowFailure = false): string {
  const result = spawnSync(argv[0] as string, argv.slice(1), { encoding: "utf8" });
  if (result.status !== 0 && !allowFailure)
    throw new Error(`'${argv.join(" ")}' failed (exit ${result.status}): ${result.stderr || result.stdout}`);
  return result.stdout ?? "";
}

function requireRootFor(step: string): void {
  if (process.getuid?.() !== 0)
    throw new Error(`step '${step}' creates network namespaces and needs root; run as root or leave it out of --steps`);
  requireBinary("ip", "apt-get install iproute2");
}

const SERVICE_ENV = { TURNOMATIC_LOG_LEVEL: "warn" };

async function serviceOn(store: string, cleanups: Cleanup[]): Promise<{ url: string; pid: number }> {
  const service = await startService({ store, env: SERVICE_ENV });
  cleanups.push(() => service.stop());
  return { url: service.url, pid: service.process.pid };
}

/** The namespace and veth pair of the redis-remote step (names fixed so a stale one is found and removed). */
const REMOTE = {
  namespace: "tm-ltsteps-redis",
  hostIf: "ltsteps-h",
  nsIf: "ltsteps-r",
  hostIp: "10.210.0.1",
  nsIp: "10.210.0.2",
};

function removeRemote(): void {
  // Deleting the namespace kills the veth pair with it; its processes are killed by pid before.
  for (const pid of sh(["ip", "netns", "pids", REMOTE.namespace], true)
    .split("\n")
    .filter((p) => p !== ""))
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // already gone
    }
  sh(["ip", "netns", "del", REMOTE.namespace], true);
  sh(["ip", "link", "del", REMOTE.hostIf], true);
}

async function setUp(step: StepName, cleanups: Cleanup[]): Promise<Setup> {
  switch (step) {
    case "memory": {
      const service = await serviceOn("memory:", cleanups);
      return { target: service.url, netns: undefined, watch: [], note: "1 service process on loopback, memory store" };
    }
    case "redis-local": {
      const redis = await startRedis();
      cleanups.push(() => redis.stop());
      const service = await serviceOn(redis.url, cleanups);
      return {
        target: service.url,
        netns: undefined,
        watch: [`redis:${redisPid(redis.port)}`],
        note: "1 service process + redis-server, both on loopback",
      };
    }
    case "redis-remote": {
      requireRootFor(step);
      const redisBinary = requireBinary("redis-server", "apt-get install redis-server");
      const cli = requireBinary("redis-cli", "apt-get install redis-tools");
      // The /30 must be ours alone: refuse if anything on this host already routes it.
      if (sh(["ip", "-4", "addr"]).includes("10.210.0."))
        throw new Error(
          "10.210.0.0/30 is already in use on this host; remove it (or a stale run: ip netns del tm-ltsteps-redis)",
        );
      removeRemote();
      cleanups.push(removeRemote);
      sh(["ip", "netns", "add", REMOTE.namespace]);
      sh(["ip", "link", "add", REMOTE.hostIf, "type", "veth", "peer", "name", REMOTE.nsIf]);
      sh(["ip", "link", "set", REMOTE.nsIf, "netns", REMOTE.namespace]);
      sh(["ip", "addr", "add", `${REMOTE.hostIp}/30`, "dev", REMOTE.hostIf]);
      sh(["ip", "link", "set", REMOTE.hostIf, "up"]);
      const inNs = ["ip", "netns", "exec", REMOTE.namespace];
      sh([...inNs, "ip", "addr", "add", `${REMOTE.nsIp}/30`, "dev", REMOTE.nsIf]);
      sh([...inNs, "ip", "link", "set", REMOTE.nsIf, "up"]);
      sh([...inNs, "ip", "link", "set", "lo", "up"]);
      const dir = mkdtempSync(join(tmpdir(), "turnomatic-ltsteps-redis-"));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      // Same settings as harness/redis-server.ts (no persistence), only the address differs.
      const child = Bun.spawn(
        [
          ...inNs,
          redisBinary,
          ...["--port", "6379", "--bind", REMOTE.nsIp, "--dir", dir, "--save", "", "--appendonly", "no"],
          ...["--protected-mode", "no"],
        ],
        { stdout: "ignore", stderr: "ignore" },
      );
      cleanups.unshift(async () => {
        child.kill("SIGKILL");
        await child.exited;
      });
      await waitFor(`redis-server on ${REMOTE.nsIp}:6379`, () => {
        const pong = spawnSync(cli, ["-h", REMOTE.nsIp, "-p", "6379", "PING"], { encoding: "utf8" });
        return pong.stdout.trim() === "PONG";
      });
      const pids = sh(["ip", "netns", "pids", REMOTE.namespace]).trim().split("\n").join("+");
      const service = await serviceOn(`redis://${REMOTE.nsIp}:6379`, cleanups);
      return {
        target: service.url,
        netns: undefined,
        watch: [`redis:${pids}`],
        note: `1 service process on loopback; redis-server in namespace ${REMOTE.namespace} at ${REMOTE.nsIp}, over a veth pair (10.210.0.0/30)`,
      };
    }
    case "redis-cluster": {
      const cluster = await startRedisCluster();
      cleanups.push(() => cluster.stop());
      const service = await serviceOn(cluster.url, cleanups);
      const pids = cluster.nodes.map((n) => redisPid(n.port)).join("+");
      return {
        target: service.url,
        netns: undefined,
        watch: [`redis-cluster:${pids}`],
        note: "1 service process on loopback; Redis Cluster of 3 primaries + 3 replicas on loopback",
      };
    }
    case "multi-host": {
      requireRootFor(step);
      const topology = await import("../scripts/cluster/topology.ts");
      const name = "ltsteps";
      topology.down(name);
      cleanups.push(() => topology.down(name));
      const state = await topology.up({ name, apps: 2, workers: 2, store: "redis", subnet: "10.211.0.0/24" });
      const watch = ["app1", "app2", "lb", "redis"].map(
        (host) => `${host}:${topology.namespacePids(state.hosts[host]?.namespace as string).join("+")}`,
      );
      return {
        target: state.lbUrl,
        netns: state.hosts.client?.namespace,
        watch,
        note: "HAProxy + 2 app hosts x 2 workers + Redis, each in its own namespace (npm run cluster, 10.211.0.0/24); load from the client namespace",
      };
    }
  }
}

/** The pid of the redis-server listening on a loopback port (for CPU watching). */
function redisPid(port: number): string {
  const out = sh(["ss", "-Hltnp", `sport = :${port}`], true);
  return /pid=(\d+)/.exec(out)?.[1] ?? "0";
}

/** Runs a loadtest CLI (cli.ts or max.ts) as a child, in the namespace if given; returns the result. */
async function runCli<T>(script: string, args: string[], netns: string | undefined): Promise<T> {
  const argv = [process.execPath, join(import.meta.dir, script), ...args];
  const child = Bun.spawn(netns === undefined ? argv : ["ip", "netns", "exec", netns, ...argv], {
    stdout: "pipe",
    stderr: "inherit",
  });
  current = child;
  const out = await new Response(child.stdout).text();
  const code = await child.exited;
  current = undefined;
  const path = out.trim().split("\n").at(-1) ?? "";
  if (!path.endsWith(".json")) throw new Error(`${script} ${args.join(" ")} exited ${code} without a result path`);
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

let current: ReturnType<typeof Bun.spawn> | undefined;

export interface StepSummary {
  readonly step: StepName;
  readonly note: string;
  readonly turnoload?: LoadResult;
  readonly wrk?: LoadResult;
  readonly max?: MaxResult;
  readonly error?: string;
}

async function runStep(step: StepName, options: StepsOptions, cleanups: Cleanup[]): Promise<StepSummary> {
  const setup = await setUp(step, cleanups);
  progress(`step ${step}: ${setup.note}; target ${setup.target}${setup.netns === undefined ? "" : ` from ${setup.netns}`}`);
  const label = `step=${step}`;
  const common = [
    ...["--target", setup.target, "--out", options.out, "--label", label],
    ...(setup.netns === undefined ? [] : ["--netns", setup.netns]),
  ];
  const load = ["--duration", String(options.duration)];
  // A short unrecorded warm-up first (connections, JIT, Redis Cluster slot map), so the measured
  // runs do not start cold; its result goes to a temporary directory.
  const warmupDir = mkdtempSync(join(tmpdir(), "turnomatic-ltsteps-warmup-"));
  cleanups.push(() => rmSync(warmupDir, { recursive: true, force: true }));
  await runCli<LoadResult>(
    "cli.ts",
    [...common, "--out", warmupDir, "--duration", "2", "--tool", "turnoload", "--rate", String(options.rate)],
    undefined,
  );
  const turnoload = await runCli<LoadResult>(
    "cli.ts",
    [...common, ...load, "--tool", "turnoload", "--rate", String(options.rate), "--connections", "64", "--ids", "100"],
    undefined,
  );
  const wrk = await runCli<LoadResult>(
    "cli.ts",
    [...common, ...load, "--tool", "wrk", "--connections", "32", "--ids", "100"],
    undefined,
  );
  let max: MaxResult | undefined;
  if (options.max) {
    // loadtest:max re-runs itself inside the namespace (its --netns), wrk probe included.
    max = await runCli<MaxResult>(
      "max.ts",
      [
        ...common,
        ...["--step-seconds", String(options.stepSeconds), "--ids", "100", "--dist", "uniform"],
        ...(setup.watch.length > 0 ? ["--pids", setup.watch.join(",")] : []),
      ],
      undefined,
    );
  }
  return { step, note: setup.note, turnoload, wrk, max };
}

export function summaryLine(s: StepSummary): string {
  if (s.error !== undefined) return `${s.step}: FAILED: ${s.error}`;
  const part = (r: LoadResult | undefined) =>
    r === undefined
      ? "-"
      : `${r.rps} req/s p50 ${r.latencyMs.p50} p99 ${r.latencyMs.p99} ms, errors ${r.errors}, non-2xx ${r.non2xx}, ${r.verification?.summary ?? "not verified"}`;
  const max =
    s.max === undefined
      ? ""
      : `; max ${s.max.maxSustainableRate} req/s (knee ${s.max.knee ?? "-"}, ${s.max.verification.summary})`;
  return `${s.step}: turnoload ${part(s.turnoload)}; wrk ${part(s.wrk)}${max}`;
}

async function tearDown(cleanups: Cleanup[]): Promise<void> {
  for (const cleanup of cleanups.splice(0)) {
    try {
      await cleanup();
    } catch (error) {
      progress(`cleanup failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

async function main(options: StepsOptions): Promise<number> {
  const cleanups: Cleanup[] = [];
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, async () => {
      current?.kill("SIGKILL");
      await tearDown(cleanups);
      process.exit(130);
    });
  const summaries: StepSummary[] = [];
  for (const step of options.steps) {
    try {
      summaries.push(await runStep(step, options, cleanups));
    } catch (error) {
      summaries.push({ step, note: "", error: error instanceof Error ? error.message : String(error) });
    } finally {
      await tearDown(cleanups);
    }
    progress(summaryLine(summaries.at(-1) as StepSummary));
  }
  process.stderr.write(`\nbuild-up steps:\n${summaries.map((s) => `  ${summaryLine(s)}`).join("\n")}\n`);
  const failed = summaries.filter(
    (s) =>
      s.error !== undefined ||
      s.turnoload?.verification?.ok === false ||
      s.wrk?.verification?.ok === false ||
      s.max?.verification.ok === false,
  );
  return failed.length === 0 ? 0 : 1;
}

if (import.meta.main)
  await runCommand({ name: "loadtest:steps", usage: STEPS_USAGE, options: STEPS_ARGS }, (values) =>
    main(stepsOptionsFrom(values)),
  );
