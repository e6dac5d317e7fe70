/**
 * CPU sampling from /proc, to say what saturated during a load step: the app processes, HAProxy,
 * Redis, this generator, and the host as a whole (on a small host the generator competes with the
 * service for the same cores, which a report must say).
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

export interface ProcessGroup {
  readonly name: string;
  readonly pids: readonly number[];
}

function processTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return 0; // the process ended
  }
}

function hostTicks(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.reduce((a, b) => a + b, 0);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * Pids of the processes listening on a TCP port (every worker with SO_REUSEPORT), found through
 * /proc/net/tcp{,6} socket inodes. By port, not by name: other services with the same program may
 * run on this host and must not be counted.
 */
export function pidsListeningOn(port: number): number[] {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1] ?? "";
      if (cols[3] === "0A" && Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port) inodes.add(cols[9] ?? "");
    }
  }
  const pids: number[] = [];
  if (inodes.size === 0) return pids;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      for (const fd of readdirSync(`/proc/${entry}/fd`)) {
        const link = readlinkSync(`/proc/${entry}/fd/${fd}`);
        if (link.startsWith("socket:[") && inodes.has(link.slice(8, -1))) {
          pids.push(Number(entry));
          break;
        }
      }
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return pids;
}

export function commandName(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return String(pid);
  }
}

/**
 * Groups to watch: `name:port` entries (processes listening there) and `name:pid` entries given
 * with --ports / --pids. The target's own port is always watched, as "target (<program>)".
 */
export function watchGroups(targetPort: number, ports: readonly string[], pids: readonly string[]): ProcessGroup[] {
  const groups: ProcessGroup[] = [];
  const targetPids = pidsListeningOn(targetPort);
  if (targetPids.length > 0)
    groups.push({ name: `target (${commandName(targetPids[0] as number)} x${targetPids.length})`, pids: targetPids });
  for (const entry of ports) {
    const [name, port] = entry.split(":");
    const found = pidsListeningOn(Number(port));
    if (name !== undefined && found.length > 0) groups.push({ name, pids: found });
  }
  for (const entry of pids) {
    const [name, pid] = entry.split(":");
    if (name !== undefined && pid !== undefined) groups.push({ name, pids: pid.split("+").map(Number) });
  }
  return groups;
}

export interface CpuSample {
  /** Percent of one core per group (can exceed 100 for several processes), plus generator and host. */
  readonly percent: Record<string, number>;
}

/** Starts a measurement; call the returned function to get CPU% since then. */
export function startCpuSample(groups: readonly ProcessGroup[]): () => CpuSample {
  const t0 = performance.now();
  const before = groups.map((g) => g.pids.reduce((sum, pid) => sum + processTicks(pid), 0));
  const self0 = process.cpuUsage();
  const host0 = hostTicks();
  return () => {
    const seconds = (performance.now() - t0) / 1000;
    const percent: Record<string, number> = {};
    groups.forEach((g, i) => {
      const ticks = g.pids.reduce((sum, pid) => sum + processTicks(pid), 0) - (before[i] ?? 0);
      percent[g.name] = Math.round((ticks / TICKS_PER_SECOND / seconds) * 1000) / 10;
    });
    const self = process.cpuUsage(self0);
    percent.generator = Math.round(((self.user + self.system) / 1e6 / seconds) * 1000) / 10;
    const host1 = hostTicks();
    const cores = navigator.hardwareConcurrency || 1;
    percent.host = Math.round(((host1.busy - host0.busy) / Math.max(1, host1.total - host0.total)) * 1000) / 10;
    percent.hostCores = cores;
    return { percent };
  };
}
