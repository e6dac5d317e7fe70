/**
 * CPU seconds per request, for docs/reports/scalability.md. Each case is loaded by wrk (-t1 -c64, GET
 * /turno/<id>) in interleaved rounds; we read utime+stime from /proc for the service process and its
 * descendants (workers), for redis-server, and wrk's own rusage, so the per-request CPU cost of each
 * layer is measured rather than inferred from req/s on a shared machine. Cases:
 *   baseline     bench/baseline-server.ts: Bun.serve + a local counter (the HTTP floor)
 *   memory       turnomatic, memory: store, 1 hot id
 *   redis-hot    turnomatic + local redis-server, 1 hot id
 *   redis-1000   turnomatic + local redis-server, 1000 ids
 *   sqlite       turnomatic + SQLite (WAL, synchronous FULL), 1 hot id
 *   naive        bench/naive-server.ts: one Redis INCR per request, no coalescing
 *   redis-hot-lb redis-hot behind HAProxy with deploy/haproxy's template (httpclose: a new client
 *                connection per request, http-server-close), HAProxy's CPU reported as lbCpuUsPerReq
 *   redis-hot-lb-ka  the same without httpclose (client keep-alive; server side still
 *                http-server-close): what the LB costs once turn requests are replay-safe
 *   redis-hot-lb-reuse  keep-alive on both sides (the template's http-server-close removed too)
 *   redis-hot-w2 / redis-1000-w2  the same with --workers 2 (supervisor + 2 workers, SO_REUSEPORT)
 * Turnomatic runs with its defaults (metrics on). redis-server is the test helper's (no AOF).
 * Results: docs/reports/scalability/<timestamp>-cpu-per-request.json (medians and every run).
 *
 * Usage: bun bench/cpu-per-request.ts [--seconds 5] [--rounds 3] [--cases a,b,...] (--help)
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireBinary } from "../harness/binaries.ts";
import { freePort, waitFor } from "../harness/ports.ts";
import { type RedisProcess, startRedis } from "../harness/redis-server.ts";
import { startService } from "../harness/service.ts";
import { renderHaproxyConfig } from "../scripts/cluster/haproxy-config.ts";
import { integerArg, listArg, numberArg, runCommand, UsageError } from "./toolkit/cli.ts";
import { cpuSecondsOf, descendants, procCpuSeconds, redisPid } from "./toolkit/proc.ts";
import { redisWork } from "./toolkit/redis-info.ts";
import { machineInfo, writeResultFile } from "./toolkit/result-file.ts";
import { medianOfFields } from "./toolkit/stats.ts";
import { runWrk, transportErrors } from "./toolkit/wrk.ts";

const USAGE = `usage: bun bench/cpu-per-request.ts [options]
CPU µs per request of the service, redis-server, HAProxy and wrk, per deployment shape (wrk -t1 -c64).
  --seconds S     seconds per measured run (default 5)
  --rounds N      interleaved rounds (default 3); medians are reported
  --cases LIST    comma-separated case keys (default all)
  --help          this text`;

const ARGS = { seconds: { type: "string" }, rounds: { type: "string" }, cases: { type: "string" } } as const;

let seconds = 5;
let rounds = 3;
let only: string[] | undefined;

interface Started {
  url: string;
  pid: number;
  /** A load balancer in front of the service, measured apart (lbCpuUsPerReq). */
  lbPid?: number;
  stop: () => Promise<unknown>;
}

/** HAProxy with the production template (httpclose + http-server-close) in front of one service. */
async function behindHaproxy(inner: Started, clientKeepAlive = false, serverReuse = false): Promise<Started> {
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-lb-"));
  const port = await freePort();
  const app = new URL(inner.url);
  const cfg = renderHaproxyConfig({
    servers: [{ name: "app1", address: app.hostname, port: Number(app.port) }],
    bind: `127.0.0.1:${port}`,
    statsBind: `127.0.0.1:${await freePort()}`,
    statsSocket: join(dir, "admin.sock"),
    clientKeepAlive,
  });
  // serverReuse: keep LB->app connections open too (bench only; production closes them, see the template).
  writeFileSync(join(dir, "haproxy.cfg"), serverReuse ? cfg.replace(/^\s*option http-server-close\s*$/m, "") : cfg);
  const lb = Bun.spawn([requireBinary("haproxy"), "-db", "-f", join(dir, "haproxy.cfg")], { stdout: "ignore", stderr: "ignore" });
  const url = `http://127.0.0.1:${port}`;
  await waitFor("haproxy", async () => (await fetch(`${url}/turno/warmup`)).ok);
  const stop = async () => {
    lb.kill("SIGTERM");
    await lb.exited;
    rmSync(dir, { recursive: true, force: true });
    return await inner.stop();
  };
  return { url, pid: inner.pid, lbPid: lb.pid, stop };
}

async function script(name: string, env: Record<string, string>): Promise<Started> {
  const port = await freePort();
  const child = Bun.spawn([process.execPath, join(import.meta.dir, name)], {
    env: { ...process.env, PORT: String(port), ...env },
    stdout: "ignore",
    stderr: "inherit",
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(name, async () => (await fetch(`${url}/turno/warmup`)).ok);
  const stop = async () => {
    child.kill("SIGTERM");
    return await child.exited;
  };
  return { url, pid: child.pid, stop };
}

async function service(store: string | undefined, args: string[] = []): Promise<Started> {
  const s = await startService({ store, args });
  if (args.includes("--workers")) await waitFor("workers", async () => descendants(s.process.pid).length >= 3);
  return { url: s.url, pid: s.process.pid, stop: () => s.stop() };
}

const CASES: Array<{ key: string; ids: number; redis: boolean; start: (redis: RedisProcess) => Promise<Started> }> = [
  { key: "baseline", ids: 1, redis: false, start: () => script("baseline-server.ts", {}) },
  { key: "memory", ids: 1, redis: false, start: () => service("memory:") },
  { key: "redis-hot", ids: 1, redis: true, start: (r) => service(r.url) },
  { key: "redis-1000", ids: 1000, redis: true, start: (r) => service(r.url) },
  { key: "sqlite", ids: 1, redis: false, start: () => service(undefined) },
  { key: "naive", ids: 1, redis: true, start: (r) => script("naive-server.ts", { REDIS_URL: r.url }) },
  { key: "redis-hot-lb", ids: 1, redis: true, start: async (r) => behindHaproxy(await service(r.url)) },
  { key: "redis-hot-lb-ka", ids: 1, redis: true, start: async (r) => behindHaproxy(await service(r.url), true) },
  { key: "redis-hot-lb-reuse", ids: 1, redis: true, start: async (r) => behindHaproxy(await service(r.url), true, true) },
  { key: "redis-hot-w2", ids: 1, redis: true, start: (r) => service(r.url, ["--workers", "2"]) },
  { key: "redis-1000-w2", ids: 1000, redis: true, start: (r) => service(r.url, ["--workers", "2"]) },
];

const treeCpu = cpuSecondsOf;

async function roundTrips(redis: RedisProcess): Promise<number> {
  return redisWork(await redis.cli("INFO", "commandstats")).roundTrips;
}

async function wrk(url: string, ids: number, duration: number) {
  const run = await runWrk({ url, threads: 1, connections: 64, seconds: duration, ids });
  const s = run.summary;
  return {
    requests: s.requests,
    duration_us: s.durationUs,
    p99_us: s.latencyMs.p99 * 1000,
    errors: transportErrors(s) + s.statusErrors,
    wrkCpu: run.wrkCpuSeconds,
  };
}

async function main(): Promise<void> {
  const redis = await startRedis();
  const rPid = redisPid(redis.url);
  const cases = CASES.filter((c) => only === undefined || only.includes(c.key));
  const runs = new Map<string, Array<Record<string, number>>>(cases.map((c) => [c.key, []]));
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const c of cases) {
        await redis.cli("FLUSHALL");
        const s = await c.start(redis);
        try {
          await wrk(s.url, c.ids, 2); // warm-up (JIT, connections), not recorded
          const pids = descendants(s.pid);
          await redis.cli("CONFIG", "RESETSTAT");
          const before = { svc: treeCpu(pids), redis: procCpuSeconds(rPid), lb: s.lbPid ? procCpuSeconds(s.lbPid) : 0 };
          const r = await wrk(s.url, c.ids, seconds);
          const svc = treeCpu(pids) - before.svc;
          const red = procCpuSeconds(rPid) - before.redis;
          const lb = s.lbPid ? procCpuSeconds(s.lbPid) - before.lb : 0;
          const trips = c.redis ? await roundTrips(redis) : 0;
          const run = {
            rps: r.requests / (r.duration_us / 1e6),
            p99_ms: r.p99_us / 1000,
            errors: r.errors,
            processes: pids.length,
            serviceCpuUsPerReq: (svc / r.requests) * 1e6,
            serviceCores: svc / (r.duration_us / 1e6),
            redisCpuUsPerReq: c.redis ? (red / r.requests) * 1e6 : 0,
            redisRoundTripsPerReq: c.redis ? trips / r.requests : 0,
            lbCpuUsPerReq: (lb / r.requests) * 1e6,
            wrkCpuUsPerReq: (r.wrkCpu / r.requests) * 1e6,
          };
          runs.get(c.key)?.push(run);
          process.stderr.write(
            `round ${round}/${rounds} ${c.key}: ${Math.round(run.rps)} req/s, service ${run.serviceCpuUsPerReq.toFixed(1)} µs/req (${run.serviceCores.toFixed(2)} cores), redis ${run.redisCpuUsPerReq.toFixed(2)} µs/req, lb ${run.lbCpuUsPerReq.toFixed(1)} µs/req, wrk ${run.wrkCpuUsPerReq.toFixed(1)} µs/req, errors ${run.errors}\n`,
          );
        } finally {
          await s.stop();
        }
      }
    }
  } finally {
    await redis.stop();
  }
  const summary = cases.map((c) => {
    const list = runs.get(c.key) ?? [];
    return { case: c.key, ids: c.ids, ...medianOfFields(list), runs: list };
  });
  const command = `bun bench/cpu-per-request.ts ${process.argv.slice(2).join(" ")}`.trim();
  const file = writeResultFile(join(import.meta.dir, "../docs/reports/scalability"), "cpu-per-request", {
    date: new Date().toISOString(),
    command,
    machine: machineInfo(),
    settings: { seconds, rounds, wrk: "-t1 -c64" },
    summary,
  });
  console.log("case            req/s    svc µs/req  svc cores  redis µs/req  trips/req  lb µs/req  wrk µs/req  p99 ms  errors");
  for (const s of summary as unknown as Array<Record<string, number | string>>) {
    const n = (k: string, d = 1) => Number(s[k]).toFixed(d);
    console.log(
      `${String(s.case).padEnd(15)} ${n("rps", 0).padStart(7)}  ${n("serviceCpuUsPerReq").padStart(10)}  ${n("serviceCores", 2).padStart(9)}  ${n("redisCpuUsPerReq", 2).padStart(12)}  ${n("redisRoundTripsPerReq", 4).padStart(9)}  ${n("lbCpuUsPerReq").padStart(9)}  ${n("wrkCpuUsPerReq").padStart(10)}  ${n("p99_ms", 2).padStart(6)}  ${s.errors}`,
    );
  }
  console.log(file);
}

await runCommand({ name: "cpu-per-request", usage: USAGE, options: ARGS }, async (values) => {
  seconds = numberArg(values.seconds, "seconds", 5, 1, 600);
  rounds = integerArg(values.rounds, "rounds", 3, 1, 50);
  only = values.cases === undefined ? undefined : listArg(values.cases);
  for (const key of only ?? [])
    if (!CASES.some((c) => c.key === key))
      throw new UsageError(`--cases: unknown case '${key}'; known: ${CASES.map((c) => c.key).join(", ")}`);
  requireBinary("wrk", "apt-get install wrk");
  await main();
  return 0;
});
