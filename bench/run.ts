/**
 * `npm run bench`: in one run, wrk against
 *   (a) a minimal Bun.serve baseline (process-local counter),
 *   (b) Turnomatic + local Redis, one hot id,
 *   (c) Turnomatic + local Redis, 1000 ids,
 *   (d) Turnomatic + SQLite, one hot id,
 *   (e) a naive server: one Redis INCR per request, no coalescing,
 *   (f) (b) with OpenTelemetry tracing on at 1% head sampling, exporting to a local OTLP receiver,
 *   (b@S), (e@S) (b) and (e) again with redis-server capped at a share S of one core (cgroup CPU
 *       quota, root only): Redis as the bottleneck, as when one Redis serves many app hosts.
 * Turnomatic runs with its defaults (metrics on). In interleaved rounds (the machine is shared and
 * noisy), reporting the median of each case's req/s, p50/p99, its ratio to (a), Redis commands and
 * round trips per request (INFO commandstats) and Redis CPU per request (INFO cpu).
 * Results go to bench/results/bench-<timestamp>.json.
 *
 * Options (env): BENCH_DURATION (s per run, default 5), BENCH_ROUNDS (default 3),
 * BENCH_CONNECTIONS (default 64), BENCH_THREADS (wrk threads, default 1),
 * BENCH_REDIS_CPU_SHARES (comma-separated shares of a core for the capped pairs, default "0.1";
 * empty = none).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { requireBinary } from "../test/helpers/binaries.ts";
import { freePort, waitFor } from "../test/helpers/ports.ts";
import { type RedisProcess, startRedis } from "../test/helpers/redis-server.ts";
import { startService } from "../test/helpers/service.ts";
import { type CpuCap, capCpu } from "./cpu-cap.ts";
import { redisPid } from "./profile.ts";

const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
const REDIS_CPU_SHARES = (process.env.BENCH_REDIS_CPU_SHARES ?? "0.1")
  .split(",")
  .filter((share) => share.trim() !== "")
  .map((share) => {
    const value = Number(share);
    if (!(value > 0 && value < 1)) throw new Error(`BENCH_REDIS_CPU_SHARES: "${share}" is not a share of one core in (0, 1)`);
    return value;
  });
const LUA = join(import.meta.dir, "wrk/turno.lua");

interface WrkResult {
  requests: number;
  duration_us: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
  errors: number;
}

interface Run extends WrkResult {
  rps: number;
  redisCallsPerRequest?: number;
  redisRoundTripsPerRequest?: number;
  redisCpuUsPerRequest?: number;
}

interface Target {
  readonly key: string;
  readonly label: string;
  readonly ids: number;
  readonly redis: boolean;
  /** Share of one core redis-server may use during this case; undefined = no cap. */
  readonly redisCpuShare?: number;
  start(redis: RedisProcess): Promise<{ url: string; stop: () => Promise<unknown> }>;
}

/** Accepts OTLP/HTTP trace exports for (f) and counts the spans, so tracing really exports. */
let spansReceived = 0;
const otlpReceiver = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: async (request) => {
    const body = (await request.json()) as { resourceSpans?: Array<{ scopeSpans: Array<{ spans: unknown[] }> }> };
    for (const resource of body.resourceSpans ?? []) for (const scope of resource.scopeSpans) spansReceived += scope.spans.length;
    return Response.json({});
  },
});

async function startScript(script: string, env: Record<string, string>) {
  const port = await freePort();
  const child = Bun.spawn([process.execPath, join(import.meta.dir, script)], {
    env: { ...process.env, PORT: String(port), ...env },
    stdout: "ignore",
    stderr: "inherit",
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(script, async () => (await fetch(`${url}/turno/warmup`)).ok);
  return {
    url,
    stop: async () => {
      child.kill("SIGTERM");
      await child.exited;
    },
  };
}

const BASE_TARGETS: Target[] = [
  {
    key: "a",
    label: "baseline Bun.serve, local counter",
    ids: 1,
    redis: false,
    start: () => startScript("baseline-server.ts", {}),
  },
  {
    key: "b",
    label: "turnomatic + redis, 1 hot id",
    ids: 1,
    redis: true,
    start: async (redis) => startService({ store: redis.url }),
  },
  {
    key: "c",
    label: "turnomatic + redis, 1000 ids",
    ids: 1000,
    redis: true,
    start: async (redis) => startService({ store: redis.url }),
  },
  {
    key: "d",
    label: "turnomatic + sqlite, 1 hot id",
    ids: 1,
    redis: false,
    start: async () => startService({ env: { METRICS_PORT: "0" } }),
  },
  {
    key: "e",
    label: "naive: one redis INCR per request",
    ids: 1,
    redis: true,
    start: (redis) => startScript("naive-server.ts", { REDIS_URL: redis.url }),
  },
  {
    key: "f",
    label: "(b) + tracing, 1% sampled",
    ids: 1,
    redis: true,
    start: async (redis) =>
      startService({
        store: redis.url,
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${otlpReceiver.port}`,
          // The receiver above reads JSON; the exporter's default is http/protobuf.
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
          OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
          OTEL_TRACES_SAMPLER_ARG: "0.01",
        },
      }),
  },
];

/** (b) and (e) again for each Redis CPU share: the pair the "b >= 5x e" target is about. */
const CAPPED_TARGETS: Target[] = REDIS_CPU_SHARES.flatMap((share) => {
  const percent = `${Math.round(share * 1000) / 10}%`;
  return ["b", "e"].map((key) => {
    const base = BASE_TARGETS.find((t) => t.key === key) as Target;
    return {
      ...base,
      key: `${key}@${percent}`,
      label: `${base.label}, redis capped at ${percent} of a core`,
      redisCpuShare: share,
    };
  });
});

async function wrk(url: string, ids: number): Promise<WrkResult> {
  const child = Bun.spawn(["wrk", `-t${THREADS}`, `-c${CONNECTIONS}`, `-d${DURATION}s`, "-s", LUA, url], {
    env: { ...process.env, IDS: String(ids) },
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = await new Response(child.stdout).text();
  await child.exited;
  const line = out.split("\n").find((l) => l.startsWith("WRK_JSON "));
  if (line === undefined) throw new Error(`wrk printed no summary:\n${out}`);
  return JSON.parse(line.slice("WRK_JSON ".length)) as WrkResult;
}

/** redis-server's CPU time so far (user + system), in µs, from INFO cpu. */
async function redisCpuUs(redis: RedisProcess): Promise<number> {
  const info = await redis.cli("INFO", "cpu");
  const field = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, "m").exec(info)?.[1] ?? Number.NaN);
  return (field("used_cpu_user") + field("used_cpu_sys")) * 1e6;
}

/** Total calls and client round trips (script/command calls sent by clients) from INFO commandstats. */
async function redisCalls(redis: RedisProcess): Promise<{ calls: number; roundTrips: number }> {
  const info = await redis.cli("INFO", "commandstats");
  let calls = 0;
  let roundTrips = 0;
  for (const match of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
    const name = match[1] as string;
    const n = Number(match[2]);
    if (name === "info" || name === "ping" || name === "config|get" || name === "config" || name === "flushall") continue;
    calls += n;
    // Commands clients send; the HMGET/HINCRBY/HSET that scripts run inside Redis count only as calls.
    if (["evalsha", "eval", "incr", "incrby", "script|load", "script"].includes(name)) roundTrips += n;
  }
  return { calls, roundTrips };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** Caps redis-server for the capped pairs, or says why it cannot (they are then skipped, not faked). */
async function redisCap(redis: RedisProcess): Promise<{ cap: CpuCap | undefined; skipped: string | undefined }> {
  if (CAPPED_TARGETS.length === 0) return { cap: undefined, skipped: undefined };
  const cap = capCpu(redisPid(redis.url), `turnomatic-bench-redis-${process.pid}`);
  if (typeof cap !== "string") return { cap, skipped: undefined };
  process.stderr.write(`skipping the capped-Redis cases: ${cap}\n`);
  return { cap: undefined, skipped: cap };
}

async function measure(target: Target, redis: RedisProcess, cap: CpuCap | undefined): Promise<Run> {
  await redis.cli("FLUSHALL");
  cap?.set(target.redisCpuShare);
  const server = await target.start(redis);
  try {
    await wrk(server.url, target.ids); // warm-up, not recorded
    await redis.cli("CONFIG", "RESETSTAT");
    const cpuBefore = await redisCpuUs(redis);
    const result = await wrk(server.url, target.ids);
    const cpuUs = (await redisCpuUs(redis)) - cpuBefore;
    const run: Run = { ...result, rps: result.requests / (result.duration_us / 1e6) };
    if (target.redis) {
      const { calls, roundTrips } = await redisCalls(redis);
      run.redisCallsPerRequest = calls / result.requests;
      run.redisRoundTripsPerRequest = roundTrips / result.requests;
      run.redisCpuUsPerRequest = cpuUs / result.requests;
    }
    return run;
  } finally {
    await server.stop();
    cap?.set(undefined);
  }
}

async function main(): Promise<void> {
  requireBinary("wrk");
  const redis = await startRedis();
  const { cap, skipped } = await redisCap(redis);
  const targets = cap === undefined ? BASE_TARGETS : [...BASE_TARGETS, ...CAPPED_TARGETS];
  const runs = new Map<string, Run[]>(targets.map((t) => [t.key, []]));
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const target of targets) {
        const run = await measure(target, redis, cap);
        runs.get(target.key)?.push(run);
        process.stderr.write(
          `round ${round}/${ROUNDS} (${target.key}) ${target.label}: ${Math.round(run.rps)} req/s, p99 ${(run.p99_us / 1000).toFixed(2)} ms, errors ${run.errors}\n`,
        );
      }
    }
  } finally {
    cap?.remove();
    await redis.stop();
    otlpReceiver.stop(true);
  }
  report(targets, runs, skipped);
}

function report(targets: Target[], runs: Map<string, Run[]>, cappedSkipped: string | undefined): void {
  const summary = targets.map((target) => {
    const list = runs.get(target.key) ?? [];
    const pick = (f: (r: Run) => number | undefined) => {
      const values = list.map(f).filter((v): v is number => v !== undefined);
      return values.length === 0 ? undefined : median(values);
    };
    return {
      key: target.key,
      label: target.label,
      redisCpuShare: target.redisCpuShare,
      rps: pick((r) => r.rps) as number,
      p50_ms: (pick((r) => r.p50_us) as number) / 1000,
      p99_ms: (pick((r) => r.p99_us) as number) / 1000,
      errors: list.reduce((sum, r) => sum + r.errors, 0),
      redisCallsPerRequest: pick((r) => r.redisCallsPerRequest),
      redisRoundTripsPerRequest: pick((r) => r.redisRoundTripsPerRequest),
      redisCpuUsPerRequest: pick((r) => r.redisCpuUsPerRequest),
      runs: list,
    };
  });
  const row = (key: string) => summary.find((s) => s.key === key);
  const rps = (key: string) => row(key)?.rps ?? Number.NaN;
  const baseline = rps("a");
  const hot = rps("b");
  const naive = rps("e");
  const rows = summary.map((s) => ({ ...s, ratioToBaseline: s.rps / baseline }));
  const hotRoundTrips = row("b")?.redisRoundTripsPerRequest ?? Number.NaN;
  const goals: Record<string, { value: number; met: boolean }> = {
    "b/a >= 0.6": { value: hot / baseline, met: hot / baseline >= 0.6 },
    "redis round trips per request (b) <= 0.1": { value: hotRoundTrips, met: hotRoundTrips <= 0.1 },
    "b >= 5x e": { value: hot / naive, met: hot / naive >= 5 },
  };
  for (const capped of summary.filter((s) => s.key.startsWith("b@"))) {
    const share = capped.key.slice(2);
    const ratio = capped.rps / rps(`e@${share}`);
    goals[`b >= 5x e, redis capped at ${share}`] = { value: ratio, met: ratio >= 5 };
  }
  // What coalescing saves where Redis is the limit: Redis CPU per request, naive over coalesced.
  const redisCpuSaving = (row("e")?.redisCpuUsPerRequest ?? Number.NaN) / (row("b")?.redisCpuUsPerRequest ?? Number.NaN);
  const traced = rps("f");
  const tracingOverhead = { "f/b (tracing at 1%)": traced / hot, spansReceived };
  const machine = { cpu: cpus()[0]?.model, cores: cpus().length, bun: Bun.version, platform: process.platform };
  const settings = {
    durationSeconds: DURATION,
    rounds: ROUNDS,
    connections: CONNECTIONS,
    wrkThreads: THREADS,
    redisCpuShares: REDIS_CPU_SHARES,
    cappedSkipped,
  };
  mkdirSync(join(import.meta.dir, "results"), { recursive: true });
  const file = join(import.meta.dir, "results", `bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ date: new Date().toISOString(), machine, settings, rows, targets: goals, redisCpuSaving, tracingOverhead }, null, 2)}\n`,
  );

  console.log(
    `\nmedian of ${ROUNDS} rounds, wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION}s, ${machine.cores} cores (${machine.cpu})`,
  );
  console.log("case      req/s      p50 ms  p99 ms  ratio-to-a  redis calls/req  round trips/req  redis µs/req  errors  what");
  const optional = (value: number | undefined, digits: number) => (value === undefined ? "-" : value.toFixed(digits));
  for (const r of rows) {
    console.log(
      `${`(${r.key})`.padEnd(9)} ${Math.round(r.rps).toString().padEnd(10)} ${r.p50_ms.toFixed(2).padEnd(7)} ${r.p99_ms.toFixed(2).padEnd(7)} ${r.ratioToBaseline.toFixed(2).padEnd(11)} ${optional(r.redisCallsPerRequest, 3).padEnd(16)} ${optional(r.redisRoundTripsPerRequest, 4).padEnd(16)} ${optional(r.redisCpuUsPerRequest, 2).padEnd(13)} ${String(r.errors).padEnd(7)} ${r.label}`,
    );
  }
  for (const [name, { value, met }] of Object.entries(goals))
    console.log(`target ${name}: ${value.toFixed(3)} ${met ? "met" : "NOT met"}`);
  if (cappedSkipped !== undefined) console.log(`capped-Redis cases skipped: ${cappedSkipped}`);
  console.log(
    `redis CPU per request, naive (e) / coalesced (b): ${redisCpuSaving.toFixed(2)}x (one Redis core serves that many times more turns)`,
  );
  console.log(`tracing at 1%: f/b = ${(traced / hot).toFixed(3)} (${spansReceived} spans exported)`);
  console.log(file);
}

await main();
