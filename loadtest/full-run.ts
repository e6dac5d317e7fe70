/**
 * `npm run loadtest:full [-- --duration 10 --step-seconds 5 --stores memory,sqlite,redis --max-only]`: the
 * single-host full run whose results are committed. For each store it starts a service (and a
 * redis-server for the redis store) on free loopback ports, runs every tool with --verify, a
 * turnoload run with 5% hostile requests, and loadtest:max; then stops everything. Afterwards run
 * `npm run loadtest:report`. Exits 1 if any verification failed.
 */
import { startRedis } from "../test/helpers/redis-server.ts";
import { startService } from "../test/helpers/service.ts";
import { describe, runLoadTest } from "./cli.ts";
import { findMaxRate, parseMaxOptions } from "./max.ts";
import { type LoadOptions, parseLoadOptions } from "./options.ts";
import { progress, writeResult } from "./result.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? (args[i + 1] as string) : fallback;
};
const duration = arg("duration", "10");
const stepSeconds = arg("step-seconds", "5");
const stores = arg("stores", "memory,sqlite,redis").split(",");
const out = arg("out", `${import.meta.dir}/results`);
/** --max-only: skip the per-tool runs, find only the maximum rate per store. */
const maxOnly = args.includes("--max-only");

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
        ...["--target", service.url, "--duration", duration, "--verify", "--out", out, "--label", label],
        ...run,
      ]);
      const { result, path } = await runLoadTest(options);
      process.stderr.write(`${describe(result)}\n${path}\n`);
      if (result.verification?.ok === false) failures++;
    }
    const max = await findMaxRate(
      parseMaxOptions([
        ...["--target", service.url, "--label", label, "--out", out, "--step-seconds", stepSeconds],
        ...[
          "--start",
          "1000",
          "--factor",
          "1.5",
          "--max-steps",
          "10",
          "--refine",
          "2",
          "--ids",
          "100",
          "--dist",
          "uniform",
          "--connections",
          "64",
        ],
        ...(watch.length > 0 ? ["--ports", watch.join(",")] : []),
      ]),
    );
    const path = writeResult(out, max);
    progress(
      `${label}: max sustainable ${max.maxSustainableRate} req/s, knee ${max.knee}, saturated: ${max.saturated}; ${max.verification.summary}`,
    );
    process.stderr.write(`${path}\n`);
    if (!max.verification.ok) failures++;
  } finally {
    for (const cleanup of cleanups) await cleanup().catch(() => undefined);
  }
}
process.stderr.write(`full run done; ${failures} failed verifications\n`);
process.exit(failures === 0 ? 0 : 1);
