/**
 * Where the CPU goes per request, for docs/reports/scalability.md: runs `bun --cpu-prof-md src/main.ts` (one
 * process, defaults: metrics on) against a local redis-server (or memory:), loads it with wrk for
 * SECONDS, SIGTERMs it so Bun writes the profile, and while wrk runs also samples the whole process
 * with `perf record -e cpu-clock` when perf is installed (the JS profile attributes native time --
 * uWebSockets, the kernel, GC -- to whichever JS frame ran last; perf sees native frames). Writes to
 * docs/reports/scalability/profile-<case>/: the Bun markdown profile, perf's per-DSO and per-symbol tables,
 * and layers.json (self time grouped by layer, see LAYERS below).
 *
 * Usage: bun bench/profile.ts [--case redis-hot|redis-hot-keyed|redis-1000|memory] [--seconds 10] (--help)
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitFor } from "../harness/ports.ts";
import { startRedis } from "../harness/redis-server.ts";
import { choiceArg, numberArg, parseOrExit } from "./toolkit/cli.ts";
import { procCpuSeconds, redisPid } from "./toolkit/proc.ts";
import { runWrk } from "./toolkit/wrk.ts";

const USAGE = `usage: bun bench/profile.ts [--case redis-hot|redis-hot-keyed|redis-1000|memory] [--seconds 10]
Bun's CPU profile (and perf's, when installed) of one service under wrk; writes docs/reports/scalability/profile-<case>/.
  --case C      redis-hot (default), redis-hot-keyed (every request a POST with a fresh Idempotency-Key),
                redis-1000 or memory
  --seconds S   seconds of load (default 10)
  --help        this text`;

const { which, seconds } = parseOrExit(
  { name: "profile", usage: USAGE, options: { case: { type: "string" }, seconds: { type: "string" } } },
  (values) => ({
    which: choiceArg(values.case, "case", ["redis-hot", "redis-hot-keyed", "redis-1000", "memory"] as const, "redis-hot"),
    seconds: numberArg(values.seconds, "seconds", 10, 2, 600),
  }),
);
const ids = which === "redis-1000" ? 1000 : 1;
const keyed = which === "redis-hot-keyed";
const ROOT = join(import.meta.dir, "..");
const out = join(ROOT, "docs/reports/scalability", `profile-${which}`);
const perf = Bun.which("perf");

/** Layer of a profile row, from its function name and location; first match wins. */
const LAYERS: Array<[string, (fn: string, at: string) => boolean]> = [
  [
    "ioredis encode/decode + redis store",
    (_f, at) => /ioredis|redis-parser|denque|standard-as-callback|src\/stores\/redis/.test(at),
  ],
  ["metrics (prom-client / lean metrics)", (_f, at) => /prom-client|src\/observability|tdigest|bintrees/.test(at)],
  ["coalescer", (_f, at) => at.includes("src/allocation")],
  ["domain (plan-reservation, id)", (_f, at) => at.includes("src/domain")],
  ["JSON/Response", (fn, at) => /src\/http\/responses/.test(at) || /^(Response|JSON|stringify|json)\b/.test(fn)],
  ["router/app (src/http)", (_f, at) => at.includes("src/http")],
  ["other node_modules", (_f, at) => at.includes("node_modules")],
  ["Bun runtime / native (incl. idle attributed to frames)", () => true],
];

interface Row {
  selfMs: number;
  fn: string;
  at: string;
}

function parseSelfTable(markdown: string): Row[] {
  const section = markdown.split("## Hot Functions (Self Time)")[1]?.split("\n## ")[0] ?? "";
  const rows: Row[] = [];
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length < 8 || !/^[\d.]+%$/.test(cells[1] ?? "")) continue;
    rows.push({
      selfMs: toMs(cells[2] as string),
      fn: (cells[5] as string).replace(/`/g, ""),
      at: (cells[6] as string).replace(/`/g, ""),
    });
  }
  return rows;
}

function toMs(text: string): number {
  const value = Number.parseFloat(text);
  if (text.endsWith("ms")) return value;
  if (text.endsWith("us") || text.endsWith("µs")) return value / 1000;
  return value * 1000;
}

async function main(): Promise<void> {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const profDir = mkdtempSync(join(tmpdir(), "turnomatic-prof-"));
  const redis = which === "memory" ? undefined : await startRedis();
  const port = await freePort();
  const child = Bun.spawn([process.execPath, "--cpu-prof-md", `--cpu-prof-dir=${profDir}`, join(ROOT, "src/main.ts")], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      METRICS_PORT: String(await freePort()),
      TURNOMATIC_STORE: redis?.url ?? "memory:",
    },
    stdout: "ignore",
    stderr: "ignore",
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor("turnomatic", async () => (await fetch(`${url}/healthz`)).ok);
    const cpuBefore = procCpuSeconds(child.pid);
    const redisBefore = redis ? procCpuSeconds(redisPid(redis.url)) : 0;
    const wrk = runWrk({ url, threads: 1, connections: 64, seconds, ids, keyed });
    const perfRun = perf
      ? Bun.spawn(
          [
            perf,
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "-g",
            "-p",
            String(child.pid),
            "-o",
            join(profDir, "perf.data"),
            "--",
            "sleep",
            String(Math.max(1, seconds - 2)),
          ],
          { stdout: "ignore", stderr: "ignore" },
        )
      : undefined;
    const load = await wrk;
    await perfRun?.exited;
    const cpu = procCpuSeconds(child.pid) - cpuBefore;
    const redisCpu = redis ? procCpuSeconds(redisPid(redis.url)) - redisBefore : 0;
    const summary = { requests: load.summary.requests, duration_us: load.summary.durationUs };
    child.kill("SIGTERM");
    await child.exited;
    const md = readdirSync(profDir).find((f) => f.endsWith(".md"));
    if (md === undefined) throw new Error(`bun wrote no profile to ${profDir}`);
    copyFileSync(join(profDir, md), join(out, "bun-cpu-profile.md"));
    const rows = parseSelfTable(readFileSync(join(profDir, md), "utf8"));
    const total = rows.reduce((s, r) => s + r.selfMs, 0);
    const layers = new Map<string, number>();
    for (const r of rows) {
      const layer = (LAYERS.find(([, test]) => test(r.fn, r.at)) as [string, unknown])[0];
      layers.set(layer, (layers.get(layer) ?? 0) + r.selfMs);
    }
    if (perf) {
      const report = (args: string[]) =>
        Bun.spawnSync([perf, "report", "-i", join(profDir, "perf.data"), "--stdio", "--no-children", ...args], {
          stdout: "pipe",
          stderr: "ignore",
        }).stdout.toString();
      writeFileSync(join(out, "perf-by-dso.txt"), report(["--sort", "dso", "-g", "none"]));
      writeFileSync(
        join(out, "perf-by-symbol.txt"),
        report(["--sort", "dso,sym", "-g", "none"]).split("\n").slice(0, 120).join("\n"),
      );
    }
    const result = {
      case: which,
      command: `bun bench/profile.ts --case ${which} --seconds ${seconds}`,
      date: new Date().toISOString(),
      wrk: { ...summary, rps: summary.requests / (summary.duration_us / 1e6), ids, keyed, connections: 64 },
      serviceCpuSeconds: cpu,
      serviceCpuMicrosPerRequest: (cpu / summary.requests) * 1e6,
      redisCpuMicrosPerRequest: redis ? (redisCpu / summary.requests) * 1e6 : undefined,
      profileSelfMsTotal: total,
      layers: [...layers]
        .map(([layer, ms]) => ({ layer, selfMs: Math.round(ms), share: ms / total }))
        .sort((a, b) => b.selfMs - a.selfMs),
      note: "the profiler runs in-process, so these req/s are below an unprofiled run; use the shares, not the throughput",
    };
    writeFileSync(join(out, "layers.json"), `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify(result, null, 2));
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
    await redis?.stop();
    rmSync(profDir, { recursive: true, force: true });
  }
}

if (import.meta.main) await main();
