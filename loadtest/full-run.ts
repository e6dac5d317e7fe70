/**
 * `npm run loadtest:full [-- --duration 10 --step-seconds 5 --stores memory,sqlite,redis --max-only]`: the
 * single-host full run whose results are committed. For each store it starts a service (and a
 * redis-server for the redis store) on free loopback ports, runs every tool (verified), a
 * turnoload run with 5% hostile requests, and loadtest:max (one hot id, --calibrate before the
 * first store); then stops everything. Afterwards run `npm run loadtest:report`. Exits 1 if any
 * verification failed.
 */
import { listArg, numberArg, parseCommand, runCommand, UsageError } from "../bench/toolkit/cli.ts";
import { startRedis } from "../harness/redis-server.ts";
import { startService } from "../harness/service.ts";
import { describe, runLoadTest } from "./cli.ts";
import { findMaxRate, MAX_ARGS, maxOptionsFrom, summaryLine } from "./max.ts";
import { type LoadOptions, parseLoadOptions } from "./options.ts";
import { progress, writeResult } from "./result.ts";

const USAGE = `usage: npm run loadtest:full -- [options]
  --duration S        seconds of each tool's run (default 10)
  --step-seconds S    seconds per loadtest:max step (default 5)
  --stores LIST       comma-separated: memory,sqlite,redis (default all three)
  --max-only          only loadtest:max per store, no per-tool runs
  --out DIR           result directory (default loadtest/results)
  --help              this text`;

const ARGS = {
  duration: { type: "string" },
  "step-seconds": { type: "string" },
  stores: { type: "string" },
  "max-only": { type: "boolean" },
  out: { type: "string" },
} as const;

let duration = "10";
let stepSeconds = "5";
let stores: string[] = [];
let out = "";
let maxOnly = false;

/** The store URL (undefined: startService's fresh SQLite file) and `name:port` entries to watch. */
async function storeUrl(store: string, cleanups: (() => Promise<unknown>)[]): Promise<[string | undefined, string[]]> {
  if (store === "memory") return ["memory:", []];
  if (store === "sqlite") return [undefined, []];
  if (store === "redis") {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    return [redis.url, [`redis:${redis.port}`]];
  }
  throw new Error(`unknown store '${store}'; use memory, sqlite or redis`);
}

let failures = 0;
let cleanups: (() => Promise<unknown>)[] = [];

async function main(): Promise<number> {
  // Interrupted: stop the service and redis-server this run started before leaving.
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, async () => {
      for (const cleanup of cleanups) await cleanup().catch(() => undefined);
      process.exit(130);
    });
  for (const store of stores) {
    cleanups = [];
    try {
      const [url, watch] = await storeUrl(store, cleanups);
      const service = await startService({ store: url, env: { TURNOMATIC_LOG_LEVEL: "warn" } });
      cleanups.unshift(() => service.stop());
      const label = `store=${store}`;
      const runs: string[][] = [
        ["--tool", "wrk", "--connections", "32", "--ids", "100", "--dist", "uniform"],
        ["--tool", "autocannon", "--connections", "32", "--ids", "100", "--dist", "uniform"],
        ["--tool", "hey", "--connections", "32"],
        ["--tool", "ab", "--connections", "32"],
        ["--tool", "httperf", "--rate", "2000"],
        ["--tool", "turnoload", "--connections", "64", "--ids", "100", "--dist", "zipf", "--rate", "2000"],
        [
          "--tool",
          "turnoload",
          "--connections",
          "64",
          "--ids",
          "100",
          "--dist",
          "uniform",
          "--rate",
          "1000",
          "--hostile",
          "0.05",
          "--label",
          `${label} hostile=5%`,
        ],
      ];
      for (const run of maxOnly ? [] : runs) {
        const options: LoadOptions = parseLoadOptions([
          ...["--target", service.url, "--duration", duration, "--out", out, "--label", label],
          ...run,
        ]);
        const { result, path } = await runLoadTest(options);
        process.stderr.write(`${describe(result)}\n${path}\n`);
        if (result.verification?.ok === false) failures++;
      }
      const maxArgs = [
        ...["--target", service.url, "--label", label, "--out", out, "--step-seconds", stepSeconds],
        ...(store === stores[0] ? ["--calibrate"] : []),
        ...(watch.length > 0 ? ["--ports", watch.join(",")] : []),
      ];
      const max = await findMaxRate(
        maxOptionsFrom(parseCommand({ name: "loadtest:max", usage: "", options: MAX_ARGS }, maxArgs)),
        `npm run loadtest:max -- ${maxArgs.map((arg) => (arg.includes("/") ? "<service URL or dir>" : arg)).join(" ")} (from npm run loadtest:full -- ${process.argv.slice(2).join(" ")})`,
      );
      const path = writeResult(out, max);
      progress(
        `${label}: ${summaryLine(max, max.settings.sloMs as number, max.settings.maxErrorRate as number)}; knee ${max.knee}, saturated: ${max.saturated}; ${max.verification.summary}`,
      );
      process.stderr.write(`${path}\n`);
      if (!max.verification.ok) failures++;
    } finally {
      for (const cleanup of cleanups) await cleanup().catch(() => undefined);
    }
  }
  process.stderr.write(`full run done; ${failures} failed verifications\n`);
  return failures === 0 ? 0 : 1;
}

await runCommand({ name: "loadtest:full", usage: USAGE, options: ARGS }, async (values) => {
  duration = String(numberArg(values.duration, "duration", 10, 1, 600));
  stepSeconds = String(numberArg(values["step-seconds"], "step-seconds", 5, 1, 60));
  stores = listArg(values.stores ?? "memory,sqlite,redis");
  for (const store of stores)
    if (!["memory", "sqlite", "redis"].includes(store))
      throw new UsageError(`--stores: unknown store '${store}'; use memory, sqlite, redis`);
  out = values.out ?? `${import.meta.dir}/results`;
  maxOnly = values["max-only"] ?? false;
  return await main();
});
