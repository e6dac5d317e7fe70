/**
 * Cost of observability on the hot path, as ratios against a baseline measured in the same run
 * (absolute numbers on a shared machine mean little). Four services on the memory store, each loaded
 * by wrk in turn, rounds interleaved so drift hits every variant alike:
 *   baseline   METRICS_PORT=0, no tracing (no per-request hook at all)
 *   metrics    the default: prom-client metrics + onResponse hook
 *   trace-1%   metrics + OpenTelemetry, parentbased_traceidratio 0.01, exporting to a local receiver
 *   trace-100% metrics + every request traced
 * Then a micro run in this process: nanoseconds per onResponse hook call and per traceRequest call at
 * 1% sampling (the head-sampling decision, plus a whole span for the 1%), which is steadier than wrk
 * on a shared machine. Spans go over OTLP/HTTP protobuf (the default) to a local sink that counts
 * exports and bytes without decoding them (decoding in this process would take CPU from the services).
 * Usage: npm run bench:observability -- [--seconds 5] [--rounds 3] (--help)
 */
import { Registry } from "prom-client";
import { route } from "../src/http/router.ts";
import { EVENTS } from "../src/domain/events.ts";
import { createMetrics } from "../src/observability/metrics.ts";
import { createTracing } from "../src/observability/tracing.ts";
import { requireBinary } from "../harness/binaries.ts";
import { type ServiceProcess, startService } from "../harness/service.ts";
import { integerArg, numberArg, parseOrExit } from "./toolkit/cli.ts";
import { median } from "./toolkit/stats.ts";
import { runWrk } from "./toolkit/wrk.ts";

const USAGE = `usage: npm run bench:observability -- [--seconds 5] [--rounds 3]
Cost of metrics and tracing on the hot path: four memory-store services under wrk, rounds interleaved.
  --seconds S   seconds per wrk run (default 5)
  --rounds N    rounds (default 3); medians are reported
  --help        this text`;

const { seconds, rounds } = parseOrExit(
  { name: "bench:observability", usage: USAGE, options: { seconds: { type: "string" }, rounds: { type: "string" } } },
  (values) => ({
    seconds: numberArg(values.seconds, "seconds", 5, 1, 600),
    rounds: integerArg(values.rounds, "rounds", 3, 1, 50),
  }),
);
requireBinary("wrk", "apt-get install wrk");

let exports = 0;
let exportedBytes = 0;
const receiver = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: async (request) => {
    exports++;
    exportedBytes += (await request.arrayBuffer()).byteLength;
    return new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
  },
});
const otlp = { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}` };
const variants: Array<[string, Record<string, string>]> = [
  ["baseline", { METRICS_PORT: "0" }],
  ["metrics", {}],
  ["trace-1%", { ...otlp, OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.01" }],
  ["trace-100%", { ...otlp }],
];

async function load(url: string): Promise<number> {
  return (await runWrk({ url, threads: 1, connections: 32, seconds, ids: 1 })).rps;
}

const services: ServiceProcess[] = [];
try {
  for (const [, env] of variants)
    services.push(await startService({ store: "memory:", env: { TURNOMATIC_LOG_LEVEL: "warn", ...env } }));
  const results = new Map<string, number[]>(variants.map(([name]) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    // The order rotates every round so no variant always runs right after the heaviest one.
    for (let k = 0; k < variants.length; k++) {
      const i = (k + round) % variants.length;
      const name = variants[i]?.[0] as string;
      results.get(name)?.push(await load((services[i] as ServiceProcess).url));
    }
  }
  const base = median(results.get("baseline") ?? []);
  console.log(`observability overhead: ${rounds} rounds x ${seconds}s per variant, wrk -t1 -c32, memory store, same run`);
  console.log("variant      median req/s   ratio to baseline   runs");
  for (const [name, values] of results) {
    const m = median(values);
    console.log(
      `${name.padEnd(12)} ${m.toFixed(0).padStart(12)}   ${(m / base).toFixed(3).padStart(17)}   ${values.map((v) => v.toFixed(0)).join(" ")}`,
    );
  }
  console.log(`OTLP exports received by the local sink: ${exports} (${(exportedBytes / 1e6).toFixed(1)} MB)`);
  await micro();
} finally {
  for (const service of services) await service.stop("SIGKILL");
  receiver.stop(true);
}

/** Median of 5 timed loops of `body`, in nanoseconds per call. */
async function nsPerCall(count: number, body: () => unknown): Promise<number> {
  const runs: number[] = [];
  for (let run = 0; run < 5; run++) {
    const start = performance.now();
    for (let i = 0; i < count; i++) await body();
    runs.push(((performance.now() - start) * 1e6) / count);
  }
  return runs.sort((a, b) => a - b)[2] as number;
}

async function micro(): Promise<void> {
  const metrics = createMetrics(new Registry(), { waiting: () => 0, ping: async () => undefined, version: "bench" });
  const startedAt = performance.now();
  // What the app does per answer: check the channel, publish the event the metrics listen to.
  const hook = await nsPerCall(500_000, () => {
    if (EVENTS.response.active) EVENTS.response.publish({ route: "turno", method: "POST", status: 200, startedAt });
  });
  const tracing = createTracing(
    { ...otlp, OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.01" },
    "memory",
    "bench",
  );
  const request = new Request("http://127.0.0.1:7017/turno/bench", { method: "POST" });
  const where = route("/turno/bench");
  // nsPerCall awaits each call; the empty body is what that await alone costs.
  const plain = await nsPerCall(200_000, () => undefined);
  const traced = await nsPerCall(200_000, () => tracing?.traceRequest(request, where, undefined)?.end(200, undefined));
  await tracing?.shutdown();
  metrics.close();
  console.log(`micro: onResponse hook ${hook.toFixed(0)} ns/request`);
  console.log(
    `micro: traceRequest at 1% (decision + 1 span in 100) ${traced.toFixed(0)} ns vs empty ${plain.toFixed(0)} ns (+${(traced - plain).toFixed(0)} ns/request)`,
  );
}
