/**
 * The normalized result every tool's run is turned into, the machine it ran on, and where it is
 * written. One schema for all tools, so the report can put them side by side.
 */
import { type MachineInfo, writeResultFile } from "../bench/toolkit/result-file.ts";
import type { Percentiles } from "../bench/toolkit/stats.ts";
import type { LoadOptions } from "./options.ts";

export { type MachineInfo, machineInfo } from "../bench/toolkit/result-file.ts";
export { type Percentiles, percentiles } from "../bench/toolkit/stats.ts";

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

/** Writes the result JSON (`<time>-<tool or kind>[-<label>].json`) and returns its path. */
export function writeResult(dir: string, result: { tool: string; label: string; startedAt: string; kind: string }): string {
  const name = `${result.kind === "run" ? result.tool : result.kind}${result.label === "" ? "" : `-${result.label}`}`;
  return writeResultFile(dir, name, result, result.startedAt);
}

export function progress(message: string): void {
  process.stderr.write(`[loadtest ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
