/**
 * Cost of observability on the hot path, as ratios against a baseline measured in the same run
 * (absolute numbers on a shared machine mean little). Four services on the memory store, each loaded
 * by wrk in turn, rounds interleaved so drift hits every variant alike:
 *   baseline   METRICS_PORT=0, no tracing (no per-request hook at all)
 *   metrics    the default: prom-client metrics + onResponse hook
 *   trace-1%   metrics + OpenTelemetry, parentbased_traceidratio 0.01, exporting to a local receiver
 *   trace-100% metrics + every request traced
 * Usage: bun bench/observability-overhead.ts [seconds-per-run=5] [rounds=3]
 */
import { requireBinary } from "../test/helpers/binaries.ts";
import { type ServiceProcess, startService } from "../test/helpers/service.ts";

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 3);
const wrk = requireBinary("wrk");

let spans = 0;
const receiver = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: async (request) => {
    const body = (await request.json()) as { resourceSpans?: Array<{ scopeSpans: Array<{ spans: unknown[] }> }> };
    for (const r of body.resourceSpans ?? []) for (const s of r.scopeSpans) spans += s.spans.length;
    return Response.json({});
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
  const child = Bun.spawn([wrk, "-t1", "-c32", `-d${seconds}s`, `${url}/turno/bench`], { stdout: "pipe", stderr: "ignore" });
  const out = await new Response(child.stdout).text();
  await child.exited;
  const match = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (match === null) throw new Error(`wrk printed no rate:\n${out}`);
  return Number(match[1]);
}

const services: ServiceProcess[] = [];
try {
  for (const [, env] of variants)
    services.push(await startService({ store: "memory:", env: { TURNOMATIC_LOG_LEVEL: "warn", ...env } }));
  const results = new Map<string, number[]>(variants.map(([name]) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < variants.length; i++) {
      const name = variants[i]?.[0] as string;
      results.get(name)?.push(await load((services[i] as ServiceProcess).url));
    }
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
  const base = median(results.get("baseline") ?? []);
  console.log(`observability overhead: ${rounds} rounds x ${seconds}s per variant, wrk -t1 -c32, memory store, same run`);
  console.log("variant      median req/s   ratio to baseline   runs");
  for (const [name, values] of results) {
    const m = median(values);
    console.log(
      `${name.padEnd(12)} ${m.toFixed(0).padStart(12)}   ${(m / base).toFixed(3).padStart(17)}   ${values.map((v) => v.toFixed(0)).join(" ")}`,
    );
  }
  console.log(`spans received by the local OTLP receiver: ${spans}`);
} finally {
  for (const service of services) await service.stop("SIGKILL");
  receiver.stop(true);
}
