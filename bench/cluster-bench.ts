/**
 * The production path on the local namespace topology (root needed), in one run: throughput through
 * HAProxy (to 2 app hosts) versus straight to 1 app host, and the CPU microseconds per request of
 * every component on the way (HAProxy, the app processes, redis-server, and wrk itself), from
 * /proc/<pid>/stat deltas over each wrk run. wrk runs inside the client namespace; the targets are
 * measured in alternation (direct, LB keepalive, LB strict, direct, ...) and reported as medians, so
 * drift in the machine's load hits all of them.
 *
 * The cluster is `npm run cluster -- up`'s default (lb-mode keepalive, Redis with appendfsync always).
 * For the strict mode (option httpclose + http-server-close) a second HAProxy runs in the same LB
 * namespace on port 81, in front of the same app hosts, so both modes are measured in the same run;
 * a third (keepalive, port 82) in front of app1 alone separates the cost of the LB hop from the cost
 * of splitting the load over two app hosts (smaller coalesced batches per process).
 *
 * Honest caveat: every "host" here shares the same CPU cores (2 on the development machine), load
 * generator included, so req/s are not capacity figures; CPU per request is the steadier figure, and
 * what docs/reports/scalability.md's capacity plan uses.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { integerArg, listArg, type parseCommand, runCommand, UsageError } from "./toolkit/cli.ts";
import { startCpuMeter } from "./toolkit/proc.ts";
import { LB_MODES, type LbMode, parseLbMode, renderHaproxyConfig } from "../scripts/cluster/haproxy-config.ts";
import {
  APP_PORT,
  appNames,
  appUrl,
  CHECK,
  type ClusterState,
  down,
  lbStatRows,
  namespacePids,
  requireClusterRoot,
  spawnIn,
  up,
  waitReady,
} from "../scripts/cluster/topology.ts";

const NAME = "bench";
const STRICT_PORT = 81;

export const USAGE = `usage: npm run bench:cluster -- [options]        (as root: it builds a network-namespace topology)
  --seconds 5          length of each wrk run
  --rounds 3           rounds; each round runs every target once, in alternation
  --connections 64     wrk connections (-c)
  --threads 1          wrk threads (-t)
  --workers 1          worker processes per app host
  --ids 1,10000        workloads: 1 = one hot id, N = N ids picked at random (comma-separated list)
  --lb-modes keepalive,strict   HAProxy modes to measure next to direct (keepalive is the cluster's own)
  --out DIR            where the JSON result goes (default bench/results)
  -h, --help           this text
Prints, per workload, median req/s and CPU us per request of each component, and the ratios.`;

interface Options {
  seconds: number;
  rounds: number;
  connections: number;
  threads: number;
  workers: number;
  ids: number[];
  lbModes: LbMode[];
  out: string;
}

const ARGS = {
  seconds: { type: "string" },
  rounds: { type: "string" },
  connections: { type: "string" },
  threads: { type: "string" },
  workers: { type: "string" },
  ids: { type: "string" },
  "lb-modes": { type: "string" },
  out: { type: "string" },
} as const;

/** The options from parsed arguments; throws UsageError naming the option. */
export function benchOptionsFrom(v: ReturnType<typeof parseCommand<typeof ARGS>>): Options {
  let lbModes: LbMode[];
  try {
    lbModes = (v["lb-modes"] ?? LB_MODES.join(",")).split(",").map((mode) => parseLbMode(mode, "--lb-modes"));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  return {
    seconds: integerArg(v.seconds, "seconds", 5, 1, 600),
    rounds: integerArg(v.rounds, "rounds", 3, 1, 50),
    connections: integerArg(v.connections, "connections", 64, 1, 10_000),
    threads: integerArg(v.threads, "threads", 1, 1, 64),
    workers: integerArg(v.workers, "workers", 1, 1, 64),
    ids: listArg(v.ids ?? "1,10000").map((n) => integerArg(n, "ids", 1, 1, 1_000_000)),
    lbModes,
    out: v.out ?? join(import.meta.dir, "results"),
  };
}

interface Target {
  readonly name: string;
  readonly url: string;
  /** Components on this target's path: name -> pids. */
  readonly path: Record<string, number[]>;
}

interface Run {
  readonly workload: string;
  readonly target: string;
  readonly round: number;
  readonly requests: number;
  readonly requestsPerSecond: number;
  readonly latencyP99: string | undefined;
  readonly non2xx: number;
  readonly socketErrors: string | undefined;
  /** CPU microseconds per request, per component, plus "wrk" and the sum of the path ("path"). */
  readonly cpuUsPerRequest: Record<string, number>;
  /** Script calls (EVAL/EVALSHA/FCALL) redis-server ran per request: the store's round trips for reservations. */
  readonly redisCallsPerRequest: number;
  /** Whole machine busy over the run (percent of all cores). */
  readonly hostBusyPercent: number;
}

function luaScript(state: ClusterState, ids: number): string {
  const file = join(state.stateDir, `turns-${ids}.lua`);
  const body =
    ids === 1
      ? 'request = function() return wrk.format("GET", "/turno/hot") end\n'
      : `request = function() return wrk.format("GET", "/turno/b" .. math.random(${ids})) end\n`;
  writeFileSync(file, body);
  return file;
}

/**
 * Script calls (EVAL/EVALSHA/FCALL) redis-server has run so far: the store's reservation round
 * trips. INFO commandstats also counts the commands a script runs inside, which are not round trips.
 */
async function redisCalls(state: ClusterState): Promise<number> {
  const child = spawnIn(state, "redis", ["redis-cli", "-p", "6379", "info", "commandstats"], { stdout: "pipe" });
  const text = await new Response(child.stdout as ReadableStream<Uint8Array>).text();
  await child.exited;
  let calls = 0;
  for (const match of text.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)) {
    if (/^(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro)$/.test(match[1] ?? "")) calls += Number(match[2]);
  }
  return calls;
}

async function wrk(
  state: ClusterState,
  options: Options,
  target: Target,
  script: string,
  workload: string,
  round: number,
): Promise<Run> {
  const callsBefore = await redisCalls(state);
  const argv = [
    "wrk",
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    "--latency",
    "-s",
    script,
    target.url,
  ];
  // `ip netns exec` execs wrk: the child's pid is wrk's.
  const child = spawnIn(state, "client", argv, { stdout: "pipe", stderr: "pipe" });
  const groups = [...Object.entries(target.path).map(([name, pids]) => ({ name, pids })), { name: "wrk", pids: [child.pid] }];
  const stopMeter = startCpuMeter(groups);
  const output = await new Response(child.stdout as ReadableStream<Uint8Array>).text();
  const percent = stopMeter();
  const calls = (await redisCalls(state)) - callsBefore;
  if ((await child.exited) !== 0) {
    throw new Error(`wrk failed: ${output}${await new Response(child.stderr as ReadableStream<Uint8Array>).text()}`);
  }
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? Number.NaN);
  const requests = Number(/(\d+) requests in/.exec(output)?.[1] ?? Number.NaN);
  const cpu: Record<string, number> = {};
  let path = 0;
  for (const { name } of groups) {
    // percent of one core -> core-seconds per second -> microseconds per request.
    const us = ((percent[name] ?? 0) / 100) * (1e6 / rps);
    cpu[name] = Math.round(us * 100) / 100;
    if (name !== "wrk") path += us;
  }
  cpu.path = Math.round(path * 100) / 100;
  return {
    workload,
    target: target.name,
    round,
    requests,
    requestsPerSecond: rps,
    latencyP99: /99%\s+(\S+)/.exec(output)?.[1],
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(output)?.[1] ?? 0),
    socketErrors: /Socket errors:([^\n]*)/.exec(output)?.[1]?.trim(),
    cpuUsPerRequest: cpu,
    redisCallsPerRequest: Math.round((calls / requests) * 10_000) / 10_000,
    hostBusyPercent: percent.host ?? Number.NaN,
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/**
 * An extra HAProxy in the LB namespace on `port`, in front of `apps` (strict mode on :81 in front of
 * both apps; keepalive on :82 in front of app1 alone, to tell the hop's cost from the split's).
 */
function startExtraLb(state: ClusterState, port: number, lbMode: LbMode, apps: readonly string[]): { url: string; pid: number } {
  const lb = state.hosts.lb?.address as string;
  const file = join(state.stateDir, `haproxy-${port}.cfg`);
  writeFileSync(
    file,
    renderHaproxyConfig({
      servers: apps.map((app) => ({ name: app, address: state.hosts[app]?.address as string, port: APP_PORT })),
      bind: `${lb}:${port}`,
      statsBind: `${lb}:${port + 8300}`,
      statsSocket: join(state.stateDir, `haproxy-${port}.sock`),
      checkInterMs: CHECK.interMs,
      checkFall: CHECK.fall,
      checkRise: CHECK.rise,
      lbMode,
    }),
  );
  const child = spawnIn(state, "lb", ["haproxy", "-db", "-f", file], { stdout: "ignore", stderr: "ignore" });
  return { url: `http://${lb}:${port}`, pid: child.pid };
}

interface Summary {
  readonly workload: string;
  readonly target: string;
  readonly medianRequestsPerSecond: number;
  readonly medianCpuUsPerRequest: Record<string, number>;
  readonly medianRedisCallsPerRequest: number;
}

function summarize(runs: readonly Run[]): Summary[] {
  const keys = [...new Set(runs.map((r) => `${r.workload}\t${r.target}`))];
  return keys.map((key) => {
    const [workload = "", target = ""] = key.split("\t");
    const mine = runs.filter((r) => r.workload === workload && r.target === target);
    const components = Object.keys(mine[0]?.cpuUsPerRequest ?? {});
    const cpu: Record<string, number> = {};
    for (const c of components) cpu[c] = Math.round(median(mine.map((r) => r.cpuUsPerRequest[c] ?? 0)) * 10) / 10;
    return {
      workload,
      target,
      medianRequestsPerSecond: Math.round(median(mine.map((r) => r.requestsPerSecond))),
      medianCpuUsPerRequest: cpu,
      medianRedisCallsPerRequest: median(mine.map((r) => r.redisCallsPerRequest)),
    };
  });
}

function printRun(run: Run): void {
  const cpu = Object.entries(run.cpuUsPerRequest)
    .map(([k, v]) => `${k} ${v.toFixed(1)}`)
    .join("  ");
  process.stdout.write(
    `${run.workload.padEnd(9)} ${run.target.padEnd(13)} r${run.round} ${run.requestsPerSecond.toFixed(0).padStart(7)} req/s  p99 ${run.latencyP99}  non-2xx ${run.non2xx}  redis calls/req ${run.redisCallsPerRequest}  us/req: ${cpu}  host ${run.hostBusyPercent}%\n`,
  );
}

async function bench(options: Options): Promise<void> {
  requireClusterRoot();
  down(NAME);
  const interrupted = () => {
    down(NAME);
    process.stderr.write("bench:cluster: interrupted; cluster removed\n");
    process.exit(130);
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  const state = await up({ name: NAME, apps: 2, workers: options.workers, lbMode: "keepalive" });
  try {
    const apps = Object.fromEntries(appNames(state).map((app) => [app, namespacePids(state.hosts[app]?.namespace as string)]));
    const redis = namespacePids(state.hosts.redis?.namespace as string);
    const lbPids = namespacePids(state.hosts.lb?.namespace as string);
    const targets: Target[] = [{ name: "direct-app1", url: appUrl(state, "app1"), path: { app1: apps.app1 ?? [], redis } }];
    const extra: Array<[string, { url: string; pid: number }, Record<string, number[]>]> = [];
    if (options.lbModes.includes("keepalive")) {
      targets.push({ name: "lb-keepalive", url: state.lbUrl, path: { haproxy: lbPids, ...apps, redis } });
      const one = startExtraLb(state, 82, "keepalive", ["app1"]);
      extra.push(["lb-keepalive-app1", one, { app1: apps.app1 ?? [], redis }]);
    }
    if (options.lbModes.includes("strict")) {
      extra.push(["lb-strict", startExtraLb(state, STRICT_PORT, "strict", appNames(state)), { ...apps, redis }]);
    }
    for (const [name, lb, path] of extra) {
      await waitReady(state, [`${lb.url}/readyz`]);
      targets.push({ name, url: lb.url, path: { haproxy: [lb.pid], ...path } });
    }
    await Bun.sleep(CHECK.interMs * CHECK.rise + 200); // every server UP in the extra instances
    const runs: Run[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      for (const ids of options.ids) {
        const script = luaScript(state, ids);
        const workload = ids === 1 ? "hot-id" : `${ids}-ids`;
        for (const target of targets) {
          const run = await wrk(state, options, target, script, workload, round);
          runs.push(run);
          printRun(run);
        }
      }
    }
    const summary = summarize(runs);
    const ratios: Record<string, Record<string, number>> = {};
    process.stdout.write(
      `\nmedians of ${options.rounds} rounds (${cpus().length} cores shared by every host and by wrk; load average at start ${load}):\n`,
    );
    for (const s of summary) {
      const cpu = Object.entries(s.medianCpuUsPerRequest)
        .map(([k, v]) => `${k} ${v}`)
        .join("  ");
      process.stdout.write(
        `  ${s.workload.padEnd(9)} ${s.target.padEnd(13)} ${String(s.medianRequestsPerSecond).padStart(7)} req/s  redis calls/req ${s.medianRedisCallsPerRequest}  us/req: ${cpu}\n`,
      );
    }
    for (const workload of new Set(summary.map((s) => s.workload))) {
      const of = (target: string) => summary.find((s) => s.workload === workload && s.target === target);
      const direct = of("direct-app1");
      const r: Record<string, number> = {};
      for (const [key, target] of [
        ["keepalive", "lb-keepalive"],
        ["strict", "lb-strict"],
        ["keepaliveOneApp", "lb-keepalive-app1"],
      ] as const) {
        const lb = of(target);
        if (direct === undefined || lb === undefined) continue;
        r[`${key}ThroughputVsDirect`] = Math.round((lb.medianRequestsPerSecond / direct.medianRequestsPerSecond) * 100) / 100;
        r[`${key}PathCpuUsPerRequest`] = lb.medianCpuUsPerRequest.path ?? Number.NaN;
      }
      if (direct !== undefined) r.directPathCpuUsPerRequest = direct.medianCpuUsPerRequest.path ?? Number.NaN;
      if (r.strictPathCpuUsPerRequest !== undefined && r.keepalivePathCpuUsPerRequest !== undefined)
        r.strictOverKeepaliveCpu = Math.round((r.strictPathCpuUsPerRequest / r.keepalivePathCpuUsPerRequest) * 100) / 100;
      ratios[workload] = r;
      process.stdout.write(`  ${workload}: ${JSON.stringify(r)}\n`);
    }
    // Evidence that the keepalive LB pools its server connections: new connects vs reuses, whole run.
    const backend = (await lbStatRows(state)).BACKEND ?? {};
    const serverConnections = {
      requests: Number(backend.stot),
      connects: Number(backend.connect),
      reuses: Number(backend.reuse),
    };
    process.stdout.write(`  keepalive LB -> apps, whole run: ${JSON.stringify(serverConnections)}\n`);
    mkdirSync(options.out, { recursive: true });
    const file = join(options.out, `cluster-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    const report = {
      date: new Date().toISOString(),
      command: `npm run bench:cluster -- ${process.argv.slice(2).join(" ")}`.trim(),
      machine: { cpu: cpus()[0]?.model, cores: cpus().length, bun: Bun.version, loadAverageAtStart: load },
      note: "every host is a network namespace on one machine: they share its cores with wrk (and with other jobs: shared machine)",
      options,
      topology:
        "npm run cluster -- up (2 app hosts, Redis appendfsync always, HAProxy lb-mode keepalive) + a strict HAProxy on :81",
      runs,
      summary,
      ratios,
      keepaliveLbServerConnections: serverConnections,
    };
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`saved ${file}\n`);
  } finally {
    down(NAME);
  }
}

if (import.meta.main) {
  await runCommand({ name: "bench:cluster", usage: USAGE, options: ARGS }, async (values) => {
    const options = benchOptionsFrom(values);
    // After parsing: --help and a bad option install nothing (issue 14).
    const deps = Bun.spawnSync(["bash", join(import.meta.dir, "../scripts/ensure-test-deps.sh")], {
      stdio: ["inherit", "inherit", "inherit"],
    });
    if (deps.exitCode !== 0) throw new Error("scripts/ensure-test-deps.sh failed: install the packages it names");
    await bench(options);
    return 0;
  });
}
