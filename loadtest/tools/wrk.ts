/**
 * wrk (closed loop, C connections over min(cores, C) threads) with loadtest/wrk/turno.lua, which
 * spreads requests over the ids and, with --verify, records every (id, turno) for the checker.
 * Latency percentiles come from wrk's own histogram (microsecond resolution), read in done().
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { requireBinary } from "../../test/helpers/binaries.ts";
import { allIds } from "../ids.ts";
import type { LoadOptions } from "../options.ts";
import { progress } from "../result.ts";
import { type RecordedTurno, readCounters, verifyTurnos } from "../verify.ts";
import { runProgram, type ToolOutcome } from "./tool.ts";

export const WRK_SCRIPT = join(import.meta.dir, "../wrk/turno.lua");

interface WrkSummary {
  requests: number;
  duration_us: number;
  connect: number;
  read: number;
  write: number;
  status: number;
  timeout: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  bad_shape: number;
  not_ok: number;
  first_bad: string;
}

export function parseWrkSummary(stdout: string): WrkSummary {
  const line = stdout.split("\n").find((l) => l.startsWith("TURNOMATIC_WRK "));
  if (line === undefined)
    throw new Error(`wrk printed no TURNOMATIC_WRK line (is ${WRK_SCRIPT} in use?):\n${stdout.slice(-2000)}`);
  return JSON.parse(line.slice("TURNOMATIC_WRK ".length)) as WrkSummary;
}

/** Reads the per-thread files the Lua script wrote: one "id turno" per line. */
export function readWrkRecords(dir: string): RecordedTurno[] {
  const records: RecordedTurno[] = [];
  for (const file of readdirSync(dir)) {
    if (!file.startsWith("thread-")) continue;
    for (const line of readFileSync(join(dir, file), "utf8").split("\n")) {
      if (line === "") continue;
      const [id, turno] = line.split(" ");
      records.push({ id: id as string, turno: Number(turno) });
    }
  }
  return records;
}

export async function runWrk(options: LoadOptions): Promise<ToolOutcome> {
  const wrk = requireBinary("wrk");
  const threads = Math.max(1, Math.min(cpus().length, options.connections));
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-wrk-"));
  try {
    const ids = allIds(options.idPrefix, options.ids);
    const before = options.verify ? await readCounters(options.target, ids) : new Map<string, number>();
    const argv = [
      wrk,
      "-t",
      String(threads),
      "-c",
      String(options.connections),
      "-d",
      `${options.duration}s`,
      "--timeout",
      `${Math.ceil(options.timeoutMs / 1000)}s`,
      "-s",
      WRK_SCRIPT,
      options.target,
      "--",
      String(options.ids),
      options.dist,
      options.idPrefix,
      dir,
      options.verify ? "1" : "0",
    ];
    progress(`wrk: ${threads} threads, ${options.connections} connections, ${options.duration}s`);
    const s = parseWrkSummary(await runProgram(argv, "wrk"));
    const transport = s.connect + s.read + s.write + s.timeout;
    let verification: ToolOutcome["verification"];
    if (options.verify) {
      const after = await readCounters(options.target, ids);
      const extra: string[] = [];
      if (s.bad_shape > 0) extra.push(`${s.bad_shape} 200 responses with a wrong body or headers, e.g. ${s.first_bad}`);
      // A timed-out or 5xx request may have been given a number nobody saw: allowed as a gap.
      verification = verifyTurnos(readWrkRecords(dir), s.timeout + s.read + s.not_ok + options.connections, before, after, extra);
    }
    const us = (v: number) => Math.round(v) / 1000;
    const notes = ["closed loop: latency measured from the actual send (coordinated omission not corrected)"];
    if (!options.verify) notes.push("non-2xx counted by wrk as status >= 400 only");
    return {
      requests: s.requests,
      seconds: s.duration_us / 1e6,
      latencyMs: { p50: us(s.p50), p90: us(s.p90), p99: us(s.p99), p999: us(s.p999), max: us(s.max), mean: us(s.mean) },
      errors: transport,
      non2xx: options.verify ? s.not_ok : s.status,
      statusCounts: options.verify ? { "200": s.requests - s.not_ok, "non-200": s.not_ok } : { ">=400": s.status },
      verification,
      notes,
      command: argv.slice(0, 12).join(" "),
      extra: { threads },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
