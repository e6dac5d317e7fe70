/**
 * wrk (closed loop, C connections over min(cores, C) threads) through the toolkit's runner
 * (bench/toolkit/wrk.ts and its turno.lua), which spreads requests over the ids and, with
 * verification on, records every (id, turno) for the checker.
 */
import { cpus } from "node:os";
import { runWrk as runWrkTool, transportErrors } from "../../bench/toolkit/wrk.ts";
import { allIds } from "../ids.ts";
import type { LoadOptions } from "../options.ts";
import { progress } from "../result.ts";
import { readCounters, verifyTurnos } from "../verify.ts";
import type { ToolOutcome } from "./tool.ts";

export async function runWrk(options: LoadOptions): Promise<ToolOutcome> {
  const threads = Math.max(1, Math.min(cpus().length, options.connections));
  const ids = allIds(options.idPrefix, options.ids);
  const before = options.verify ? await readCounters(options.target, ids) : new Map<string, number>();
  progress(`wrk: ${threads} threads, ${options.connections} connections, ${options.duration}s`);
  const run = await runWrkTool({
    url: options.target,
    threads,
    connections: options.connections,
    seconds: options.duration,
    timeoutSeconds: Math.ceil(options.timeoutMs / 1000),
    ids: options.ids,
    dist: options.dist,
    prefix: options.idPrefix,
    verify: options.verify,
  });
  const s = run.summary;
  let verification: ToolOutcome["verification"];
  if (options.verify) {
    const after = await readCounters(options.target, ids);
    const extra: string[] = [];
    if (s.badShape > 0) extra.push(`${s.badShape} 200 responses with a wrong body or headers, e.g. ${s.firstBad}`);
    // A timed-out or 5xx request may have been given a number nobody saw: allowed as a gap.
    const lostAllowed = s.errors.timeout + s.errors.read + s.notOk + options.connections;
    verification = verifyTurnos(run.records, lostAllowed, before, after, extra);
  }
  const notes = ["closed loop: latency measured from the actual send (coordinated omission not corrected)"];
  if (!options.verify) notes.push("non-2xx counted by wrk as status >= 400 only");
  return {
    requests: s.requests,
    seconds: s.durationUs / 1e6,
    latencyMs: s.latencyMs,
    errors: transportErrors(s),
    non2xx: options.verify ? s.notOk : s.statusErrors,
    statusCounts: options.verify ? { "200": s.requests - s.notOk, "non-200": s.notOk } : { ">=400": s.statusErrors },
    verification,
    notes,
    command: run.command,
    extra: { threads, wrkCpuSeconds: run.wrkCpuSeconds },
  };
}
