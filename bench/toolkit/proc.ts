/**
 * The one /proc CPU meter: utime + stime of processes from /proc/<pid>/stat, taken as deltas over
 * a measurement, plus the host's busy share from /proc/stat. Used by the benchmarks (CPU seconds
 * per request) and the load tests (what saturated during a step). Linux only.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** USER_HZ on Linux: /proc/<pid>/stat counts CPU time in 1/100 s. */
export const TICKS_PER_SECOND = 100;

/** Fields of /proc/<pid>/stat after the command name, which is in parentheses and may hold spaces. */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** utime + stime of one process in seconds; throws if the process is gone. */
export function procCpuSeconds(pid: number): number {
  const fields = statFields(pid);
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** CPU seconds of several processes; one that has ended counts 0 (its time is lost, not guessed). */
export function cpuSecondsOf(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += procCpuSeconds(pid);
    } catch {
      // ended during the measurement
    }
  }
  return sum;
}

/** utime + stime of one process in seconds, or undefined when it is gone. */
export function procCpuSecondsIfAlive(pid: number): number | undefined {
  try {
    return procCpuSeconds(pid);
  } catch {
    return undefined;
  }
}

/** Resident set size of a process in bytes (VmRSS of /proc/<pid>/status). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? "0") * 1024;
}

/** The parent pid of a process, or undefined when it is gone. */
export function parentPid(pid: number): number | undefined {
  try {
    return Number(statFields(pid)[1]);
  } catch {
    return undefined;
  }
}

/** The process group of a process (itself when it is gone or a group leader's pid is not usable). */
export function processGroup(pid: number): number {
  try {
    const group = Number(statFields(pid)[2]);
    return Number.isInteger(group) && group > 1 ? group : pid;
  } catch {
    return pid;
  }
}

function numericEntries(): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number);
}

/** The process and every process below it (a supervisor's workers). */
export function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const pid of numericEntries()) {
    const ppid = parentPid(pid);
    if (ppid !== undefined) parent.set(pid, ppid);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) for (const [pid, ppid] of parent) if (ppid === tree[i]) tree.push(pid);
  return tree;
}

/** The host's busy and total jiffies from the first line of /proc/stat. */
export function hostTicks(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.reduce((a, b) => a + b, 0);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: total - idle, total };
}

/** 1-, 5- and 15-minute load averages, as /proc/loadavg prints them. */
export function loadAverage(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

/**
 * Pids of the processes listening on a TCP port (every worker with SO_REUSEPORT), found through
 * /proc/net/tcp{,6} socket inodes. By port, not by name: other services with the same program may
 * run on this host and must not be counted. Sees only this network namespace.
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
  for (const pid of numericEntries()) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (link.startsWith("socket:[") && inodes.has(link.slice(8, -1))) {
          pids.push(pid);
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

/** The pid of the redis-server listening on a loopback port (the test helper does not expose it). */
export function redisPid(redisUrlOrPort: string | number): number {
  const port = typeof redisUrlOrPort === "number" ? redisUrlOrPort : Number(new URL(redisUrlOrPort).port);
  const pid = pidsListeningOn(port)[0];
  if (pid === undefined) throw new Error(`no process listens on port ${port}; is redis-server running?`);
  return pid;
}

export interface ProcessGroup {
  readonly name: string;
  readonly pids: readonly number[];
}

/** Percent of one core per group (above 100 for several processes), plus `generator`, `host` (%) and `hostCores`. */
export type CpuPercent = Record<string, number>;

/**
 * Starts a CPU measurement of the groups, of this process (`generator`; pass the CPU seconds of
 * helper threads or processes to the stop function if they are not in this process's rusage) and
 * of the host; call the returned function to get the shares since then.
 */
export function startCpuMeter(groups: readonly ProcessGroup[]): () => CpuPercent {
  const t0 = performance.now();
  const before = groups.map((g) => cpuSecondsOf(g.pids));
  const self0 = process.cpuUsage();
  const host0 = hostTicks();
  const share = (seconds: number, elapsed: number) => Math.round((seconds / elapsed) * 1000) / 10;
  return () => {
    const elapsed = (performance.now() - t0) / 1000;
    const percent: CpuPercent = {};
    groups.forEach((g, i) => {
      percent[g.name] = share(cpuSecondsOf(g.pids) - (before[i] ?? 0), elapsed);
    });
    const self = process.cpuUsage(self0);
    percent.generator = share((self.user + self.system) / 1e6, elapsed);
    const host1 = hostTicks();
    percent.host = Math.round(((host1.busy - host0.busy) / Math.max(1, host1.total - host0.total)) * 1000) / 10;
    percent.hostCores = navigator.hardwareConcurrency || 1;
    return percent;
  };
}
