/**
 * Throughput through HAProxy to 2 app hosts versus straight to 1 app host, in the same run, on the
 * local namespace topology (root needed). wrk runs inside the client namespace; the two targets are
 * measured in alternation (direct, LB, direct, LB, ...) so that drift in the machine's load hits both.
 *
 *   npm run bench:cluster            (BENCH_SECONDS=8 BENCH_ROUNDS=2 BENCH_CONNECTIONS=64 BENCH_WORKERS=1)
 *
 * Honest caveat: every "host" here shares the same CPU cores (2 on the development machine), so two
 * app hosts cannot be twice one host: the LB hop and the second app compete for the same cores. The
 * ratio shows the cost of the extra hop and of HAProxy on a shared box, not real horizontal scaling.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { appUrl, type ClusterState, down, spawnIn, up } from "../scripts/cluster/topology.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 1);
const NAME = "bench";

interface WrkResult {
  readonly target: string;
  readonly requestsPerSecond: number;
  readonly latencyAvg: string;
  readonly latencyP99: string | undefined;
  readonly non2xx: number;
  readonly socketErrors: string | undefined;
}

async function wrk(state: ClusterState, target: string, baseUrl: string, script: string): Promise<WrkResult> {
  const argv = ["wrk", "-t2", `-c${CONNECTIONS}`, `-d${SECONDS}s`, "--latency", "-s", script, baseUrl];
  const child = spawnIn(state, "client", argv, { stdout: "pipe", stderr: "pipe" });
  const output = await new Response(child.stdout as ReadableStream<Uint8Array>).text();
  if ((await child.exited) !== 0) {
    throw new Error(`wrk failed: ${output}${await new Response(child.stderr as ReadableStream<Uint8Array>).text()}`);
  }
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? Number.NaN);
  return {
    target,
    requestsPerSecond: rps,
    latencyAvg: /Latency\s+(\S+)/.exec(output)?.[1] ?? "?",
    latencyP99: /99%\s+(\S+)/.exec(output)?.[1],
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(output)?.[1] ?? 0),
    socketErrors: /Socket errors:([^\n]*)/.exec(output)?.[1]?.trim(),
  };
}

async function main(): Promise<void> {
  down(NAME);
  const state = await up({ name: NAME, apps: 2, workers: WORKERS });
  try {
    // 64 ids, picked at random per request: some coalescing, no single hot key.
    const script = join(state.stateDir, "turns.lua");
    writeFileSync(script, 'request = function() return wrk.format("GET", "/turno/bench-" .. math.random(64)) end\n');
    const runs: WrkResult[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const [target, url] of [
        ["direct-1-host", appUrl(state, "app1")],
        ["haproxy-2-hosts", state.lbUrl],
      ] as const) {
        const result = await wrk(state, target, url, script);
        runs.push(result);
        process.stdout.write(
          `${target.padEnd(16)} ${result.requestsPerSecond.toFixed(0).padStart(7)} req/s  avg ${result.latencyAvg}  p99 ${result.latencyP99}  non-2xx ${result.non2xx}\n`,
        );
      }
    }
    const mean = (target: string) => {
      const values = runs.filter((r) => r.target === target).map((r) => r.requestsPerSecond);
      return values.reduce((a, b) => a + b, 0) / values.length;
    };
    const direct = mean("direct-1-host");
    const lb = mean("haproxy-2-hosts");
    const ratio = lb / direct;
    process.stdout.write(
      `\nHAProxy -> 2 hosts / direct -> 1 host = ${ratio.toFixed(2)} (${lb.toFixed(0)} vs ${direct.toFixed(0)} req/s; ${cpus().length} cores shared by every host)\n`,
    );
    const dir = join(import.meta.dir, "results");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `cluster-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    const report = {
      date: new Date().toISOString(),
      cores: cpus().length,
      note: "all hosts are network namespaces on one machine and share its cores",
      seconds: SECONDS,
      rounds: ROUNDS,
      connections: CONNECTIONS,
      workersPerHost: WORKERS,
      runs,
      meanRequestsPerSecond: { direct1Host: direct, haproxy2Hosts: lb },
      ratio,
    };
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`saved ${file}\n`);
  } finally {
    down(NAME);
  }
}

await main();
