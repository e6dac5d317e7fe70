/**
 * autocannon (closed loop over C connections; with --rate an overall rate cap) run in-process. Each
 * request's path picks an id; with --verify every body is parsed and its (id, turno) recorded for
 * the checker. autocannon reports no per-request send times, so I3 is judged by turnoload instead.
 */
import autocannon from "autocannon";
import { allIds, createPicker } from "../ids.ts";
import type { LoadOptions } from "../options.ts";
import { progress } from "../result.ts";
import { type RecordedTurno, readCounters, verifyTurnos } from "../verify.ts";
import type { ToolOutcome } from "./tool.ts";

const BODY = /^\{"id":"([A-Za-z0-9_-]+)","turno":(\d+)\}$/;

export async function runAutocannon(options: LoadOptions): Promise<ToolOutcome> {
  const ids = allIds(options.idPrefix, options.ids);
  const pick = createPicker(options.dist, ids.length);
  const before = options.verify ? await readCounters(options.target, ids) : new Map<string, number>();
  const recorded: RecordedTurno[] = [];
  let badShape = 0;
  let firstBad = "";
  let notOk = 0;
  progress(`autocannon: ${options.connections} connections, ${options.duration}s`);
  const instance = autocannon({
    url: options.target,
    connections: options.connections,
    duration: options.duration,
    timeout: Math.ceil(options.timeoutMs / 1000),
    ...(options.rate === undefined ? {} : { overallRate: options.rate }),
    requests: [
      {
        setupRequest: (request) => ({ ...request, method: "GET", path: `/turno/${ids[pick()]}` }),
        ...(options.verify
          ? {
              onResponse: (status: number, body: string, _context: Record<string, unknown>, headers: Record<string, string>) => {
                if (status !== 200) {
                  notOk++;
                  return;
                }
                const match = BODY.exec(body);
                const headerOf = (name: string) =>
                  Object.entries(headers ?? {}).find(([k]) => k.toLowerCase() === name)?.[1] ?? "";
                if (
                  match === null ||
                  !headerOf("content-type").startsWith("application/json") ||
                  !headerOf("cache-control").includes("no-store")
                ) {
                  badShape++;
                  if (firstBad === "") firstBad = body.slice(0, 120);
                  return;
                }
                recorded.push({ id: match[1] as string, turno: Number(match[2]) });
              },
            }
          : {}),
      },
    ],
  });
  const result = await instance;
  let verification: ToolOutcome["verification"];
  if (options.verify) {
    const after = await readCounters(options.target, ids);
    const extra = badShape > 0 ? [`${badShape} 200 responses with a wrong body or headers, e.g. ${firstBad}`] : [];
    verification = verifyTurnos(recorded, result.errors + result.timeouts + notOk + options.connections, before, after, extra);
  }
  const statusCounts: Record<string, number> = {};
  for (const [status, stat] of Object.entries(result.statusCodeStats ?? {})) statusCounts[status] = stat.count;
  return {
    requests: result.requests.total,
    seconds: result.duration,
    latencyMs: {
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      p999: result.latency.p99_9,
      max: result.latency.max,
      mean: result.latency.mean,
    },
    errors: result.errors,
    non2xx: result.non2xx,
    statusCounts,
    verification,
    notes: [
      "closed loop: latency measured from the actual send (coordinated omission not corrected)",
      "autocannon latency resolution 1 ms",
      ...(options.rate === undefined ? [] : [`overall rate capped at ${options.rate}/s`]),
    ],
    extra: { timeouts: result.timeouts },
  };
}
