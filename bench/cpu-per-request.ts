/**
 * CPU seconds per request, for docs/scalability.md. Each case is loaded by wrk (-t1 -c64, GET
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
 * Results: docs/scalability/cpu-per-request-<timestamp>.json (medians and every run).
 *
 * Usage: bun bench/cpu-per-request.ts [seconds=5] [rounds=3] [cases=comma list, default all]
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { requireBinary } from "../test/helpers/binaries.ts";
import { freePort, waitFor } from "../test/helpers/ports.ts";
import { type RedisProcess, startRedis } from "../test/helpers/redis-server.ts";
import { startService } from "../test/helpers/service.ts";
import { renderHaproxyConfig } from "../scripts/cluster/haproxy-config.ts";
import { procCpuSeconds, redisPid } from "./profile.ts";

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 3);
const only = process.argv[4]?.split(",");
const wrkBinary = requireBinary("wrk");
const LUA = join(import.meta.dir, "wrk/turno.lua");

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

/** The process and every process below it (the supervisor's workers). */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) for (const [pid, ppid] of parent) if (ppid === tree[i]) tree.push(pid);
  return tree;
}

function treeCpu(pids: number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += procCpuSeconds(pid);
    } catch {
      // Exited during the run; its CPU is lost, which would show as a drop (none expected).
    }
  }
  return sum;
}

async function roundTrips(redis: RedisProcess): Promise<number> {
  const info = await redis.cli("INFO", "commandstats");
  let n = 0;
  for (const m of info.matchAll(/^cmdstat_(evalsha|eval|incr|incrby):calls=(\d+)/gm)) n += Number(m[2]);
  return n;
}

async function wrk(url: string, ids: number, duration: number) {
  const child = Bun.spawn([wrkBinary, "-t1", "-c64", `-d${duration}s`, "-s", LUA, url], {
    env: { ...process.env, IDS: String(ids) },
    stdout: "pipe",
  });
  const text = await new Response(child.stdout).text();
  await child.exited;
  const usage = child.resourceUsage();
  const line = text.split("\n").find((l) => l.startsWith("WRK_JSON "));
  if (line === undefined) throw new Error(`wrk printed no summary: ${text}`);
  const parsed = JSON.parse(line.slice(9)) as { requests: number; duration_us: number; p99_us: number; errors: number };
  const wrkCpu = usage ? Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6 : Number.NaN;
  return { ...parsed, wrkCpu };
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

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
    const keys = Object.keys(list[0] ?? {});
    return {
      case: c.key,
      ids: c.ids,
      ...Object.fromEntries(keys.map((k) => [k, median(list.map((r) => r[k] as number))])),
      runs: list,
    };
  });
  const machine = {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    bun: Bun.version,
    load: readFileSync("/proc/loadavg", "utf8").trim(),
  };
  const dir = join(import.meta.dir, "../docs/scalability");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `cpu-per-request-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  const command = `bun bench/cpu-per-request.ts ${process.argv.slice(2).join(" ")}`.trim();
  writeFileSync(
    file,
    `${JSON.stringify({ date: new Date().toISOString(), command, machine, settings: { seconds, rounds, wrk: "-t1 -c64" }, summary }, null, 2)}\n`,
  );
  console.log("case            req/s    svc µs/req  svc cores  redis µs/req  trips/req  lb µs/req  wrk µs/req  p99 ms  errors");
  for (const s of summary as unknown as Array<Record<string, number | string>>) {
    const n = (k: string, d = 1) => Number(s[k]).toFixed(d);
    console.log(
      `${String(s.case).padEnd(15)} ${n("rps", 0).padStart(7)}  ${n("serviceCpuUsPerReq").padStart(10)}  ${n("serviceCores", 2).padStart(9)}  ${n("redisCpuUsPerReq", 2).padStart(12)}  ${n("redisRoundTripsPerReq", 4).padStart(9)}  ${n("lbCpuUsPerReq").padStart(9)}  ${n("wrkCpuUsPerReq").padStart(10)}  ${n("p99_ms", 2).padStart(6)}  ${s.errors}`,
    );
  }
  console.log(file);
}

await main();
