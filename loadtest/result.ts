/**
 * The normalized result every tool's run is turned into, the machine it ran on, and where it is
 * written. One schema for all tools, so the report can put them side by side.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, hostname, release } from "node:os";
import { join } from "node:path";
import type { LoadOptions } from "./options.ts";

export interface Percentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

export interface Verification {
  /** history: full history, I1-I4; turnos: every turno recorded, I1/I2/I4 (no timings); counter-delta: one id, counter moved by exactly the 2xx count. */
  readonly kind: "history" | "turnos" | "counter-delta";
  readonly ok: boolean;
  readonly summary: string;
  readonly problems: readonly string[];
  readonly totals: Readonly<Record<string, number>>;
  /** Final state of the counters: how many ids, their sum and the largest. */
  readonly counters: { readonly ids: number; readonly sum: number; readonly max: number };
}

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly kernel: string;
  readonly bun: string;
  readonly hostname: string;
}

export interface LoadResult {
  readonly schema: 1;
  readonly kind: "run";
  readonly tool: string;
  readonly label: string;
  readonly startedAt: string;
  readonly settings: Omit<LoadOptions, "out" | "idPrefix"> & { readonly idPrefix: string; readonly command?: string };
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  /** Milliseconds. turnoload measures from the intended send time (no coordinated omission); the others from the actual send. */
  readonly latencyMs: Percentiles;
  /** Transport errors: refused, reset, timed out, unparsable. */
  readonly errors: number;
  readonly non2xx: number;
  readonly statusCounts: Readonly<Record<string, number>>;
  readonly verification?: Verification;
  readonly notes: readonly string[];
  readonly machine: MachineInfo;
  /** Tool-specific extras (e.g. turnoload's offered rate and hostile counts). */
  readonly extra?: Readonly<Record<string, unknown>>;
}

export function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? "unknown";
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8")
      .split("\n")
      .find((l) => l.startsWith("model name"));
    if (line !== undefined) cpuModel = line.split(":")[1]?.trim() ?? cpuModel;
  } catch {
    // not Linux: os.cpus() is the best we have
  }
  return { cpuModel, cores: cpus().length, kernel: release(), bun: Bun.version, hostname: hostname() };
}

/** Exact percentiles (nearest rank) of latencies in ms; the array is sorted in place. */
export function percentiles(latencies: Float64Array | number[]): Percentiles {
  const sorted = latencies instanceof Float64Array ? latencies.sort() : Float64Array.from(latencies).sort();
  const n = sorted.length;
  if (n === 0) return { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 };
  const at = (q: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))] as number;
  let sum = 0;
  for (const v of sorted) sum += v;
  const round = (v: number) => Math.round(v * 1000) / 1000;
  return {
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    p999: round(at(0.999)),
    max: round(sorted[n - 1] as number),
    mean: round(sum / n),
  };
}

/** Writes the result JSON and returns its path. */
export function writeResult(dir: string, result: { tool: string; label: string; startedAt: string; kind: string }): string {
  mkdirSync(dir, { recursive: true });
  const stamp = result.startedAt.replace(/[:.]/g, "-");
  const label = result.label === "" ? "" : `-${result.label.replace(/[^A-Za-z0-9_-]+/g, "_")}`;
  const path = join(dir, `${stamp}-${result.kind === "run" ? result.tool : result.kind}${label}.json`);
  writeFileSync(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}

export function progress(message: string): void {
  process.stderr.write(`[loadtest ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
