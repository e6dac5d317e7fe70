/**
 * The one result writer: every benchmark and load test writes one JSON file named
 * `<timestamp>-<name>.json` holding what it measured and the machine it ran on, including the
 * load average at the end (the machine is shared: a figure without it cannot be judged).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, hostname, release } from "node:os";
import { join } from "node:path";
import { loadAverage } from "./proc.ts";

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly kernel: string;
  readonly bun: string;
  readonly hostname: string;
  /** /proc/loadavg (1, 5, 15 min) when the result was written. */
  readonly loadAverage?: string;
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
  return {
    cpuModel,
    cores: cpus().length,
    kernel: release(),
    bun: Bun.version,
    hostname: hostname(),
    loadAverage: loadAverage(),
  };
}

/** `2026-12-01T22-15-00-000Z`: an ISO time usable in a file name. */
export const fileStamp = (iso: string = new Date().toISOString()): string => iso.replace(/[:.]/g, "-");

/** Writes `<dir>/<stamp>-<name>.json` (name sanitized) and returns its path. */
export function writeResultFile(dir: string, name: string, data: unknown, startedAt: string = new Date().toISOString()): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${fileStamp(startedAt)}-${name.replace(/[^A-Za-z0-9_=.-]+/g, "_")}.json`);
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
  return path;
}
