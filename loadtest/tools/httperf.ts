/**
 * httperf (Debian package): a second, independent open-loop generator to cross-check turnoload.
 * It opens connections at a fixed rate (`--rate`), each carrying one request (`--num-calls 1`), so
 * the arrival rate does not depend on the answers; the cost is a TCP handshake per request, which
 * the service pays too (compare with turnoload's keep-alive load accordingly). One URL, so one id.
 *
 * Latencies come from its connection-lifetime histogram (`-v -v`: 1 ms bins, connect included);
 * percentiles are the bins' upper edges, so they are conservative to 1 ms. `--hog` lets it use
 * every ephemeral port. --verify checks that the counter moved by exactly the 2xx count.
 */
import { requireBinary } from "../../harness/binaries.ts";
import { type Percentiles, percentileOfSorted, round3 } from "../../bench/toolkit/stats.ts";
import { idName } from "../ids.ts";
import type { LoadOptions } from "../options.ts";
import { progress } from "../result.ts";
import { readCounters, verifyCounterDelta } from "../verify.ts";
import { runProgram, type ToolOutcome } from "./tool.ts";
import { DEFAULT_RATE } from "./turnoload.ts";

export interface HttperfSummary {
  readonly connections: number;
  readonly requests: number;
  readonly replies: number;
  readonly seconds: number;
  readonly status: Readonly<Record<"1xx" | "2xx" | "3xx" | "4xx" | "5xx", number>>;
  readonly errors: number;
  readonly cpuPercent: number;
  readonly latencyMs: Percentiles;
}

const num = (text: string, pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? Number.NaN);

/** Parses httperf's `-v -v` output: totals, reply status, errors and the lifetime histogram. */
export function parseHttperf(stdout: string): HttperfSummary {
  if (!stdout.includes("Total: connections")) throw new Error(`httperf printed no summary:\n${stdout.slice(-2000)}`);
  const bins: [number, number][] = [];
  const histogram = stdout.split("Connection lifetime histogram (time in ms):")[1]?.split("\nTotal:")[0] ?? "";
  for (const line of histogram.split("\n")) {
    const match = /^\s*([\d.]+)\s+(\d+)\s*$/.exec(line);
    if (match !== null) bins.push([Number(match[1]) + 0.5, Number(match[2])]);
  }
  const sorted: number[] = [];
  for (const [edge, count] of bins) for (let i = 0; i < count; i++) sorted.push(edge);
  const avg = num(stdout, /Connection time \[ms\]: min [\d.]+ avg ([\d.]+)/);
  const latencyMs: Percentiles = {
    p50: round3(percentileOfSorted(sorted, 0.5)),
    p90: round3(percentileOfSorted(sorted, 0.9)),
    p99: round3(percentileOfSorted(sorted, 0.99)),
    p999: round3(percentileOfSorted(sorted, 0.999)),
    max: num(stdout, /Connection time \[ms\]: min [\d.]+ avg [\d.]+ max ([\d.]+)/),
    mean: avg,
  };
  const status = (cls: string) => num(stdout, new RegExp(`Reply status:.*${cls}=(\\d+)`));
  return {
    connections: num(stdout, /Total: connections (\d+)/),
    requests: num(stdout, /Total: connections \d+ requests (\d+)/),
    replies: num(stdout, /replies (\d+) test-duration/),
    seconds: num(stdout, /test-duration ([\d.]+) s/),
    status: { "1xx": status("1xx"), "2xx": status("2xx"), "3xx": status("3xx"), "4xx": status("4xx"), "5xx": status("5xx") },
    errors: num(stdout, /Errors: total (\d+)/),
    cpuPercent: num(stdout, /total ([\d.]+)%\)/),
    latencyMs,
  };
}

export async function runHttperf(options: LoadOptions): Promise<ToolOutcome> {
  const httperf = requireBinary("httperf", "apt-get install httperf");
  const rate = options.rate ?? DEFAULT_RATE;
  const id = idName(options.idPrefix, 0);
  const url = new URL(options.target);
  const before = options.verify ? ((await readCounters(options.target, [id])).get(id) ?? 0) : 0;
  const argv = [
    httperf,
    ...["--hog", "-v", "-v", "--server", url.hostname.replace(/^\[|\]$/g, ""), "--port", url.port || "80"],
    ...["--uri", `/turno/${id}`, "--rate", String(rate), "--num-conns", String(Math.max(1, Math.round(rate * options.duration)))],
    ...["--num-calls", "1", "--timeout", String(Math.ceil(options.timeoutMs / 1000))],
  ];
  progress(`httperf: open loop, ${rate} connections/s of one request each for ${options.duration}s on ${id}`);
  const s = parseHttperf(await runProgram(argv, "httperf"));
  let verification: ToolOutcome["verification"];
  if (options.verify) {
    const after = (await readCounters(options.target, [id])).get(id) ?? 0;
    // A request that timed out or got a 5xx may have taken a number: allowed as a gap.
    verification = verifyCounterDelta(id, s.status["2xx"], s.status["5xx"] + s.errors, before, after, 0);
  }
  const non2xx = s.status["1xx"] + s.status["3xx"] + s.status["4xx"] + s.status["5xx"];
  return {
    requests: s.replies + s.errors,
    seconds: s.seconds,
    latencyMs: s.latencyMs,
    errors: s.errors,
    non2xx,
    statusCounts: { ...s.status },
    verification,
    notes: [
      "open loop (httperf): a new connection per request at a fixed rate; latency is the connection's lifetime (connect included)",
      "latency resolution 1 ms (httperf's lifetime histogram, upper bin edges); one id (one URL)",
      `httperf's own CPU: ${s.cpuPercent}% of a core (--hog)`,
    ],
    command: argv.join(" "),
    extra: { offeredRate: rate, httperfCpuPercent: s.cpuPercent },
  };
}
