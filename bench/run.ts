/**
 * `npm run bench`: in one run, wrk against
 *   (a) a minimal Bun.serve baseline (process-local counter),
 *   (b) Turnomatic + local Redis, one hot id,
 *   (c) Turnomatic + local Redis, 1000 ids,
 *   (d) Turnomatic + SQLite, one hot id,
 *   (e) a naive server: one Redis INCR per request, no coalescing,
 *   (f) (b) with OpenTelemetry tracing on at 1% head sampling, exporting to a local OTLP receiver,
 *   (g) (b) with every request a POST with a fresh Idempotency-Key (keyed waiters coalesce too),
 *   (h) the naive server (e) on 1000 ids, to compare with (c),
 *   (i) (c) with a daily reset on every id (each reservation carries its day; issue 17),
 *   (j) (b) with every request a batch turn of 100 (POST ?count=100): numbers per second, vs (b)'s,
 *   (b@S), (e@S) (b) and (e) again with redis-server capped at a share S of one core (cgroup CPU
 *       quota, root only): Redis as the bottleneck, as when one Redis serves many app hosts.
 * Turnomatic runs with its defaults (metrics on). In interleaved rounds (the machine is shared and
 * noisy), reporting the median of each case's req/s, p50/p99, its ratio to (a), Redis commands and
 * round trips per request (INFO commandstats) and Redis CPU per request (INFO cpu).
 * Results go to bench/results/<timestamp>-bench.json. The measuring pieces (wrk runner, Redis INFO
 * parser, median, result writer) are bench/toolkit's.
 */
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { join } from "node:path";
import { freePort, waitFor } from "../harness/ports.ts";
import { type RedisProcess, startRedis } from "../harness/redis-server.ts";
import { adminHeaders, startService } from "../harness/service.ts";
import { type CpuCap, capCpu } from "./cpu-cap.ts";
import { integerArg, listArg, numberArg, runCommand, UsageError } from "./toolkit/cli.ts";
import { redisPid } from "./toolkit/proc.ts";
import { redisCpuSeconds, redisWork } from "./toolkit/redis-info.ts";
import { machineInfo, writeResultFile } from "./toolkit/result-file.ts";
import { median } from "./toolkit/stats.ts";
import { runWrk, transportErrors } from "./toolkit/wrk.ts";

const USAGE = `usage: npm run bench -- [options]
Turnomatic vs a bare Bun.serve and a naive one-INCR-per-request server, wrk closed loop, rounds interleaved.
  --duration S          seconds per wrk run (default 5)
  --rounds N            rounds (default 3); medians are reported
  --connections C       wrk connections (default 64)
  --threads T           wrk threads (default 1)
  --redis-cpu-shares L  comma-separated shares of one core for the capped-Redis pairs (default 0.1; "" = none; root)
  --cases K             comma-separated row keys to run, e.g. a,b,j (default: every row)
  --help                this text
Installs missing Debian packages first (scripts/ensure-test-deps.sh, as root). Writes bench/results/<time>-bench.json.`;

const ARGS = {
  duration: { type: "string" },
  rounds: { type: "string" },
  connections: { type: "string" },
  threads: { type: "string" },
  "redis-cpu-shares": { type: "string" },
  cases: { type: "string" },
} as const;

let DURATION = 5;
let ROUNDS = 3;
let CONNECTIONS = 64;
let THREADS = 1;
let REDIS_CPU_SHARES: number[] = [];
/** Row keys to run; empty = all. */
let CASES: string[] = [];

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
  /** Numbers handed out per second: rps times the numbers per request (a batch row's count). */
  numbersPerSecond: number;
  redisCallsPerRequest?: number;
  redisRoundTripsPerRequest?: number;
  redisCpuUsPerRequest?: number;
}

interface Target {
  readonly key: string;
  readonly label: string;
  readonly ids: number;
  readonly redis: boolean;
  /** Every request a POST with a fresh Idempotency-Key. */
  readonly keyed?: boolean;
  /** Every request a batch turn of this many numbers (default 1: single turns). */
  readonly count?: number;
  /** Share of one core redis-server may use during this case; undefined = no cap. */
  readonly redisCpuShare?: number;
  start(redis: RedisProcess): Promise<{ url: string; stop: () => Promise<unknown> }>;
}

/** Accepts OTLP/HTTP trace exports for (f) and counts the spans, so tracing really exports. */
let spansReceived = 0;
const startOtlpReceiver = () =>
  Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: async (request) => {
      const body = (await request.json()) as { resourceSpans?: Array<{ scopeSpans: Array<{ spans: unknown[] }> }> };
      for (const resource of body.resourceSpans ?? [])
        for (const scope of resource.scopeSpans) spansReceived += scope.spans.length;
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

/** Numbers per request of row (j). */
const BATCH_COUNT = 100;

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
    key: "g",
    label: "(b) with every request keyed (Idempotency-Key)",
    ids: 1,
    redis: true,
    keyed: true,
    start: async (redis) => startService({ store: redis.url }),
  },
  {
    key: "h",
    label: "naive on 1000 ids",
    ids: 1000,
    redis: true,
    start: (redis) => startScript("naive-server.ts", { REDIS_URL: redis.url }),
  },
  {
    key: "i",
    label: "(c) with a daily reset on every id",
    ids: 1000,
    redis: true,
    start: async (redis) => {
      const service = await startService({ store: redis.url });
      const body = JSON.stringify({ daily: "06:00", timeZone: "Europe/Madrid" });
      for (let i = 0; i < 1000; i++) {
        const response = await fetch(`${service.url}/admin/turno/b${i}/schedule`, {
          method: "PUT",
          headers: adminHeaders(),
          body,
        });
        if (!response.ok) throw new Error(`PUT schedule: ${response.status}`);
      }
      return service;
    },
  },
  {
    key: "j",
    label: `(b) with every request a batch of ${BATCH_COUNT} (POST ?count=${BATCH_COUNT})`,
    ids: 1,
    redis: true,
    count: BATCH_COUNT,
    start: async (redis) => startService({ store: redis.url }),
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
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${otlpReceiver?.port}`,
          // The receiver above reads JSON; the exporter's default is http/protobuf.
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
          OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
          OTEL_TRACES_SAMPLER_ARG: "0.01",
        },
      }),
  },
];

let otlpReceiver: ReturnType<typeof startOtlpReceiver> | undefined;

/** (b) and (e) again for each Redis CPU share: the pair the "b >= 5x e" target is about. */
const cappedTargets = (): Target[] =>
  REDIS_CPU_SHARES.flatMap((share) => {
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

async function wrk(url: string, ids: number, keyed = false, count = 1): Promise<WrkResult> {
  const run = await runWrk({ url, threads: THREADS, connections: CONNECTIONS, seconds: DURATION, ids, keyed, count });
  const s = run.summary;
  return {
    requests: s.requests,
    duration_us: s.durationUs,
    p50_us: s.latencyMs.p50 * 1000,
    p99_us: s.latencyMs.p99 * 1000,
    max_us: s.latencyMs.max * 1000,
    errors: transportErrors(s) + s.statusErrors,
  };
}

/** redis-server's CPU time so far (user + system), in µs, from INFO cpu. */
async function redisCpuUs(redis: RedisProcess): Promise<number> {
  return redisCpuSeconds(await redis.cli("INFO", "cpu")) * 1e6;
}

/** Caps redis-server for the capped pairs, or says why it cannot (they are then skipped, not faked). */
async function redisCap(redis: RedisProcess): Promise<{ cap: CpuCap | undefined; skipped: string | undefined }> {
  if (cappedTargets().length === 0) return { cap: undefined, skipped: undefined };
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
    await wrk(server.url, target.ids, target.keyed, target.count); // warm-up, not recorded
    await redis.cli("CONFIG", "RESETSTAT");
    const cpuBefore = await redisCpuUs(redis);
    const result = await wrk(server.url, target.ids, target.keyed, target.count);
    const cpuUs = (await redisCpuUs(redis)) - cpuBefore;
    const rps = result.requests / (result.duration_us / 1e6);
    const run: Run = { ...result, rps, numbersPerSecond: rps * (target.count ?? 1) };
    if (target.redis) {
      const { calls, roundTrips } = redisWork(await redis.cli("INFO", "commandstats"));
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
  // Installs what is missing (as root) only now that the arguments are known to be good.
  if (spawnSync("bash", [join(import.meta.dir, "../scripts/ensure-test-deps.sh")], { stdio: "inherit" }).status !== 0)
    throw new Error("scripts/ensure-test-deps.sh failed: install the packages it names");
  otlpReceiver = startOtlpReceiver();
  const redis = await startRedis();
  const { cap, skipped } = await redisCap(redis);
  const all = cap === undefined ? BASE_TARGETS : [...BASE_TARGETS, ...cappedTargets()];
  const targets = CASES.length === 0 ? all : all.filter((t) => CASES.includes(t.key));
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
    otlpReceiver?.stop(true);
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
      numbersPerSecond: pick((r) => r.numbersPerSecond) as number,
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
    "g/b >= 0.8 (keyed vs plain, one hot id)": { value: rps("g") / hot, met: rps("g") / hot >= 0.8 },
    "c/h >= 1.2 (1000 ids vs naive on 1000 ids)": { value: rps("c") / rps("h"), met: rps("c") / rps("h") >= 1.2 },
    "c/a >= 0.55": { value: rps("c") / baseline, met: rps("c") / baseline >= 0.55 },
  };
  // A row left out (--cases) leaves its targets unmeasured, not failed.
  for (const [name, goal] of Object.entries(goals)) if (Number.isNaN(goal.value)) delete goals[name];
  for (const capped of summary.filter((s) => s.key.startsWith("b@"))) {
    const share = capped.key.slice(2);
    const ratio = capped.rps / rps(`e@${share}`);
    goals[`b >= 5x e, redis capped at ${share}`] = { value: ratio, met: ratio >= 5 };
  }
  // Batch turns: numbers per second of batches of BATCH_COUNT (j) over single turns (b), same store.
  const batchRatio = (row("j")?.numbersPerSecond ?? Number.NaN) / (row("b")?.numbersPerSecond ?? Number.NaN);
  // What coalescing saves where Redis is the limit: Redis CPU per request, naive over coalesced.
  const redisCpuSaving = (row("e")?.redisCpuUsPerRequest ?? Number.NaN) / (row("b")?.redisCpuUsPerRequest ?? Number.NaN);
  const traced = rps("f");
  const tracingOverhead = { "f/b (tracing at 1%)": traced / hot, spansReceived };
  const machine = { cpu: cpus()[0]?.model, platform: process.platform, ...machineInfo() };
  const settings = {
    durationSeconds: DURATION,
    rounds: ROUNDS,
    connections: CONNECTIONS,
    wrkThreads: THREADS,
    redisCpuShares: REDIS_CPU_SHARES,
    cappedSkipped,
  };
  const command = `npm run bench -- ${process.argv.slice(2).join(" ")}`.trim();
  const file = writeResultFile(join(import.meta.dir, "results"), "bench", {
    date: new Date().toISOString(),
    command,
    machine,
    settings,
    rows,
    targets: goals,
    redisCpuSaving,
    tracingOverhead,
    batchNumbersPerSecondRatio: { [`j/b (batches of ${BATCH_COUNT} vs single turns, numbers/s)`]: batchRatio },
  });

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
  if (!Number.isNaN(redisCpuSaving))
    console.log(
      `redis CPU per request, naive (e) / coalesced (b): ${redisCpuSaving.toFixed(2)}x (one Redis core serves that many times more turns)`,
    );
  if (row("f") !== undefined) console.log(`tracing at 1%: f/b = ${(traced / hot).toFixed(3)} (${spansReceived} spans exported)`);
  if (!Number.isNaN(batchRatio))
    console.log(
      `batch turns: (j) ${Math.round(row("j")?.numbersPerSecond ?? Number.NaN)} numbers/s in batches of ${BATCH_COUNT} vs (b) ${Math.round(row("b")?.numbersPerSecond ?? Number.NaN)} single turns/s: ${batchRatio.toFixed(1)}x`,
    );
  console.log(file);
}

await runCommand({ name: "bench", usage: USAGE, options: ARGS }, async (values) => {
  DURATION = numberArg(values.duration, "duration", 5, 1, 600);
  ROUNDS = integerArg(values.rounds, "rounds", 3, 1, 50);
  CONNECTIONS = integerArg(values.connections, "connections", 64, 1, 10_000);
  THREADS = integerArg(values.threads, "threads", 1, 1, 64);
  CASES = listArg(values.cases);
  const known = [...BASE_TARGETS.map((t) => t.key), "b@", "e@"];
  for (const key of CASES)
    if (!known.some((k) => key === k || (k.endsWith("@") && key.startsWith(k))))
      throw new UsageError(`--cases: "${key}" is not a row (${BASE_TARGETS.map((t) => t.key).join(", ")})`);
  REDIS_CPU_SHARES = listArg(values["redis-cpu-shares"] ?? "0.1").map((share) => {
    const value = Number(share);
    if (!(value > 0 && value < 1)) throw new UsageError(`--redis-cpu-shares: "${share}" is not a share of one core in (0, 1)`);
    return value;
  });
  await main();
  return 0;
});
