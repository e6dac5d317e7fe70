/**
 * hey (closed loop, C workers, optional per-worker QPS limit) on one URL: hey has no way to vary
 * the path, so it always hammers one id. Latencies come from its CSV (one line per answered
 * request, so percentiles are exact). hey's CSV leaves out requests that failed in transport: those
 * are counted from the requests it planned, and --verify checks that the counter moved by exactly
 * the number of 200s (no body is available to check).
 */
import { requireBinary } from "../../harness/binaries.ts";
import { idName } from "../ids.ts";
import type { LoadOptions } from "../options.ts";
import { percentiles, progress } from "../result.ts";
import { readCounters, verifyCounterDelta } from "../verify.ts";
import { countStatus, non2xxOf, runProgram, type ToolOutcome } from "./tool.ts";

export async function runHey(options: LoadOptions): Promise<ToolOutcome> {
  const hey = requireBinary("hey");
  const id = idName(options.idPrefix, 0);
  const before = options.verify ? ((await readCounters(options.target, [id])).get(id) ?? 0) : 0;
  const argv = [
    hey,
    "-z",
    `${options.duration}s`,
    "-c",
    String(options.connections),
    "-t",
    String(Math.ceil(options.timeoutMs / 1000)),
  ];
  if (options.rate !== undefined) argv.push("-q", String(Math.max(1, Math.ceil(options.rate / options.connections))));
  argv.push("-o", "csv", `${options.target}/turno/${id}`);
  progress(`hey: ${options.connections} workers, ${options.duration}s on ${id}`);
  {
    const csv = await runProgram(argv, "hey");
    const lines = csv.split("\n").filter((l) => l !== "" && !l.startsWith("response-time"));
    const latencies = new Float64Array(lines.length);
    const statusCounts: Record<string, number> = {};
    let lastOffset = 0;
    lines.forEach((line, i) => {
      const cols = line.split(",");
      latencies[i] = Number(cols[0]) * 1000;
      countStatus(statusCounts, cols[6] ?? "?");
      lastOffset = Math.max(lastOffset, Number(cols[7]) + Number(cols[0]));
    });
    const ok = statusCounts["200"] ?? 0;
    let verification: ToolOutcome["verification"];
    if (options.verify) {
      const after = (await readCounters(options.target, [id])).get(id) ?? 0;
      const failed = Object.entries(statusCounts)
        .filter(([status]) => status.startsWith("5"))
        .reduce((n, [, count]) => n + count, 0);
      // Transport failures are not in hey's CSV; beyond the requests abandoned at the end, the
      // counter check allows none of them: a run with timeouts shows up as a violation to look at.
      verification = verifyCounterDelta(id, ok, failed, before, after, options.connections);
    }
    return {
      requests: lines.length,
      seconds: Math.max(options.duration, lastOffset),
      latencyMs: percentiles(latencies),
      errors: 0,
      non2xx: non2xxOf(statusCounts),
      statusCounts,
      verification,
      notes: [
        "closed loop, one id (hey has one URL)",
        "transport errors are not in hey's CSV and are not counted here",
        ...(options.rate === undefined ? [] : [`rate capped at ${options.rate}/s via -q per worker`]),
      ],
      command: argv.join(" "),
    };
  }
}
