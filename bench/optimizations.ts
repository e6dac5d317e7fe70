/**
 * Before/after figures of the optimizations in docs/reports/scalability.md, each variant measured in the same
 * run, variants alternated round by round, medians reported with ratios (the machine is shared, so
 * only the ratios mean something). All in this process, against the real stores:
 *   redis   RedisCounterStore over a local redis-server, 1000 ids, waves of one reservation per id
 *           (what the coalescer sends when 1000 ids are busy): RESERVE_MANY batching across ids
 *           (batchAcrossIds, the production setting) vs one script call per id, each with ioredis
 *           auto-pipelining off (production) and on. Reports reservations/s, client and redis-server
 *           CPU µs per reservation, and Redis round trips (EVALSHA calls) per reservation.
 *   sqlite  SqliteStore's group commit (all reservations of one event-loop turn in one IMMEDIATE
 *           transaction, one fsync) vs a commit per reservation (the same SQL and pragmas, each
 *           reservation in its own IMMEDIATE transaction), waves of 100 ids.
 *   metrics the per-request metrics work: lean pre-resolved cells (src/observability/lean-metrics.ts,
 *           production) vs prom-client labelled children looked up per request
 *           (counter.labels(route, method, status).inc() + histogram.labels(route).observe()).
 *   client  load-generator CPU per request: turnoload's raw keep-alive pool (loadtest/tools/http-pool.ts)
 *           vs Bun's fetch, 64 requests in flight against bench/baseline-server.ts.
 * Results: docs/reports/scalability/<timestamp>-optimizations.json.
 * Usage: bun bench/optimizations.ts [--seconds 3] [--rounds 3] (--help)
 */
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Redis from "ioredis";
import { Counter, Histogram, Registry } from "prom-client";
import { EMPTY_COUNTER, planReservation } from "../src/domain/plan-reservation.ts";
import { LeanCounter, LeanHistogram } from "../src/observability/lean-metrics.ts";
import { baseRedisOptions, defineScripts, RedisCounterStore, type ScriptedClient } from "../src/stores/redis-store.ts";
import { SqliteStore } from "../src/stores/sqlite-store.ts";
import { HttpPool } from "./toolkit/http-pool.ts";
import { freePort, waitFor } from "../harness/ports.ts";
import { startRedis } from "../harness/redis-server.ts";
import { integerArg, numberArg, parseOrExit } from "./toolkit/cli.ts";
import { procCpuSeconds, redisPid } from "./toolkit/proc.ts";
import { commandCalls } from "./toolkit/redis-info.ts";
import { machineInfo, writeResultFile } from "./toolkit/result-file.ts";
import { medianOfFields } from "./toolkit/stats.ts";

const USAGE = `usage: bun bench/optimizations.ts [--seconds 3] [--rounds 3]
Before/after of each optimization (Redis batching, SQLite group commit, lean metrics, raw client), same run.
  --seconds S   seconds per variant (default 3)
  --rounds N    alternated rounds (default 3); medians are reported
  --help        this text`;

const { seconds, rounds } = parseOrExit(
  { name: "optimizations", usage: USAGE, options: { seconds: { type: "string" }, rounds: { type: "string" } } },
  (values) => ({
    seconds: numberArg(values.seconds, "seconds", 3, 1, 600),
    rounds: integerArg(values.rounds, "rounds", 3, 1, 50),
  }),
);
const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

type Sample = Record<string, number>;

async function redisSection(): Promise<Record<string, Sample[]>> {
  const redis = await startRedis();
  const rPid = redisPid(redis.url);
  const ids = Array.from({ length: 1000 }, (_, i) => `o${i}`);
  const variants = [
    { key: "batch+noAP (production)", batch: true, ap: false },
    { key: "perId+noAP", batch: false, ap: false },
    { key: "batch+AP", batch: true, ap: true },
    { key: "perId+AP", batch: false, ap: true },
  ];
  const out: Record<string, Sample[]> = Object.fromEntries(variants.map((v) => [v.key, []]));
  try {
    for (let round = 0; round < rounds; round++) {
      for (const v of round % 2 ? [...variants].reverse() : variants) {
        const client = new Redis(redis.url, { ...baseRedisOptions(5000), enableAutoPipelining: v.ap });
        defineScripts(client);
        const store = new RedisCounterStore("redis", client as unknown as ScriptedClient, "opt:", { batchAcrossIds: v.batch });
        await Promise.all(ids.map((id) => store.reserve({ id, n: 1 }))); // warm-up: scripts loaded, JIT
        await redis.cli("CONFIG", "RESETSTAT");
        const c0 = cpuNow();
        const r0 = procCpuSeconds(rPid);
        const t0 = performance.now();
        let reservations = 0;
        while (performance.now() - t0 < seconds * 1000) {
          await Promise.all(ids.map((id) => store.reserve({ id, n: 1 })));
          reservations += ids.length;
        }
        const elapsed = (performance.now() - t0) / 1000;
        const client_ = cpuNow() - c0;
        const server = procCpuSeconds(rPid) - r0;
        const info = await redis.cli("INFO", "commandstats");
        const evalsha = commandCalls(info).get("evalsha") ?? 0;
        await store.close();
        const sample = {
          reservationsPerSecond: reservations / elapsed,
          clientCpuUsPerReservation: (client_ / reservations) * 1e6,
          redisCpuUsPerReservation: (server / reservations) * 1e6,
          roundTripsPerReservation: evalsha / reservations,
        };
        out[v.key]?.push(sample);
        process.stderr.write(`redis ${v.key}: ${JSON.stringify(sample)}\n`);
      }
    }
  } finally {
    await redis.stop();
  }
  return out;
}

async function sqliteSection(): Promise<Record<string, Sample[]>> {
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-opt-sqlite-"));
  const ids = Array.from({ length: 100 }, (_, i) => `s${i}`);
  const out: Record<string, Sample[]> = { "group commit (production)": [], "commit per reservation": [] };
  try {
    for (let round = 0; round < rounds; round++) {
      for (const key of round % 2 ? Object.keys(out).reverse() : Object.keys(out)) {
        const path = join(dir, `r${round}-${key.length}.db`);
        let reservations = 0;
        const c0 = cpuNow();
        const t0 = performance.now();
        if (key.startsWith("group")) {
          const store = new SqliteStore({ path, busyTimeoutMs: 5000 });
          while (performance.now() - t0 < seconds * 1000) {
            await Promise.all(ids.map((id) => store.reserve({ id, n: 1 })));
            reservations += ids.length;
          }
          await store.close();
        } else {
          // SqliteStore's schema, pragmas and statements, but one IMMEDIATE transaction per reservation.
          const db = new Database(path, { create: true, strict: true });
          db.run("PRAGMA journal_mode = WAL");
          db.run("PRAGMA synchronous = FULL");
          db.run("CREATE TABLE counters (id TEXT PRIMARY KEY, value INTEGER NOT NULL, epoch INTEGER NOT NULL) WITHOUT ROWID");
          const select = db.query<{ value: number; epoch: number }, [string]>("SELECT value, epoch FROM counters WHERE id = ?");
          const upsert = db.query<unknown, [string, number, number]>(
            "INSERT INTO counters (id, value, epoch) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET value = excluded.value, epoch = excluded.epoch",
          );
          const reserveOne = db.transaction((id: string) => {
            const stored = select.get(id) ?? { value: 0, epoch: 0 };
            const plan = planReservation(
              { ...EMPTY_COUNTER, ...stored },
              { id, n: 1 },
              { generation: 0, floor: 0 },
              () => undefined,
            );
            upsert.run(id, plan.next.value, plan.next.epoch);
            return plan.first;
          });
          while (performance.now() - t0 < seconds * 1000) {
            for (const id of ids) reserveOne.immediate(id);
            reservations += ids.length;
            await new Promise((resolve) => setImmediate(resolve));
          }
          db.close();
        }
        const elapsed = (performance.now() - t0) / 1000;
        const sample = {
          reservationsPerSecond: reservations / elapsed,
          cpuUsPerReservation: ((cpuNow() - c0) / reservations) * 1e6,
        };
        out[key]?.push(sample);
        process.stderr.write(`sqlite ${key}: ${JSON.stringify(sample)}\n`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

function metricsSection(): Record<string, Sample[]> {
  const N = 2_000_000;
  const routes = ["turno", "peek", "healthz"];
  const statuses = ["200", "503"];
  const registry = new Registry();
  const promCounter = new Counter({
    name: "b_requests_total",
    help: "b",
    labelNames: ["route", "method", "status"],
    registers: [registry],
  });
  const promHist = new Histogram({ name: "b_seconds", help: "b", labelNames: ["route"], registers: [registry] });
  const leanCounter = new LeanCounter("bench_lean_requests_total", "b", registry);
  const leanHist = new LeanHistogram(
    "bench_lean_seconds",
    "b",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registry,
  );
  const cells = new Map<string, { c: { value: number }; h: { observe(v: number): void } }>();
  for (const r of routes)
    for (const s of statuses)
      cells.set(`${r}${s}`, { c: leanCounter.cell({ route: r, method: "GET", status: s }), h: leanHist.series({ route: r }) });
  const out: Record<string, Sample[]> = { "lean cells (production)": [], "prom-client labels()": [] };
  for (let round = 0; round < rounds; round++) {
    for (const key of round % 2 ? Object.keys(out).reverse() : Object.keys(out)) {
      const t0 = performance.now();
      for (let i = 0; i < N; i++) {
        const route = routes[i % 3] as string;
        const status = statuses[i & 1] as string;
        const value = (i % 100) / 10000;
        if (key.startsWith("lean")) {
          const cell = cells.get(`${route}${status}`) as { c: { value: number }; h: { observe(v: number): void } };
          cell.c.value++;
          cell.h.observe(value);
        } else {
          promCounter.labels(route, "GET", status).inc();
          promHist.labels(route).observe(value);
        }
      }
      const sample = { nsPerRequest: ((performance.now() - t0) * 1e6) / N };
      out[key]?.push(sample);
      process.stderr.write(`metrics ${key}: ${JSON.stringify(sample)}\n`);
    }
  }
  return out;
}

/** Client CPU per request: Bun's fetch vs turnoload's raw keep-alive pool, 64 in flight, against bench/baseline-server.ts. */
async function clientSection(): Promise<Record<string, Sample[]>> {
  const port = await freePort();
  const server = Bun.spawn([process.execPath, join(import.meta.dir, "baseline-server.ts")], {
    env: { ...process.env, PORT: String(port) },
    stdout: "ignore",
    stderr: "inherit",
  });
  const url = `http://127.0.0.1:${port}`;
  const out: Record<string, Sample[]> = { "raw pool (turnoload)": [], fetch: [] };
  try {
    await waitFor("baseline server", async () => (await fetch(`${url}/turno/warmup`)).ok);
    for (let round = 0; round < rounds; round++) {
      for (const key of round % 2 ? Object.keys(out).reverse() : Object.keys(out)) {
        const pool = new HttpPool(url, 64, 5000);
        const one =
          key === "fetch"
            ? async () => (await fetch(`${url}/turno/c`)).text()
            : async () => (await pool.request("GET", "/turno/c")).body;
        const loop = async (until: number) => {
          let n = 0;
          while (performance.now() < until) {
            await one();
            n++;
          }
          return n;
        };
        await Promise.all(Array.from({ length: 64 }, () => loop(performance.now() + 300))); // warm-up
        const c0 = cpuNow();
        const t0 = performance.now();
        const counts = await Promise.all(Array.from({ length: 64 }, () => loop(t0 + seconds * 1000)));
        const requests = counts.reduce((a, b) => a + b, 0);
        const elapsed = (performance.now() - t0) / 1000;
        pool.close();
        const sample = { requestsPerSecond: requests / elapsed, clientCpuUsPerRequest: ((cpuNow() - c0) / requests) * 1e6 };
        out[key]?.push(sample);
        process.stderr.write(`client ${key}: ${JSON.stringify(sample)}\n`);
      }
    }
  } finally {
    server.kill("SIGTERM");
    await server.exited;
  }
  return out;
}

function summarize(section: Record<string, Sample[]>) {
  return Object.fromEntries(
    Object.entries(section).map(([key, samples]) => [
      key,
      {
        median: medianOfFields(samples),
        samples,
      },
    ]),
  );
}

const result = {
  date: new Date().toISOString(),
  command: `bun bench/optimizations.ts --seconds ${seconds} --rounds ${rounds}`,
  machine: machineInfo(),
  redis: summarize(await redisSection()),
  sqlite: summarize(await sqliteSection()),
  metrics: summarize(metricsSection()),
  client: summarize(await clientSection()),
};
const file = writeResultFile(join(import.meta.dir, "../docs/reports/scalability"), "optimizations", result);
for (const section of ["redis", "sqlite", "metrics", "client"] as const)
  for (const [key, { median: m }] of Object.entries(result[section]))
    console.log(
      `${section.padEnd(8)} ${key.padEnd(28)} ${Object.entries(m)
        .map(([k, v]) => `${k}=${v < 1 ? v.toFixed(4) : v.toFixed(2)}`)
        .join("  ")}`,
    );
console.log(file);
process.exit(0);
