/**
 * Caps a running process at a share of one CPU core with a cgroup CPU quota, so a benchmark can
 * put Redis where it is the bottleneck (a Redis shared by many app hosts) on one machine.
 * Needs root and a cgroup CPU controller (v1 `cpu`, or v2 with `cpu` delegated); otherwise
 * `capCpu` answers why it cannot, and the caller reports that instead of a figure.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface CpuCap {
  /** Share of one core (0.05 = 5 %); undefined lifts the cap. */
  set(share: number | undefined): void;
  /** Moves the process back to the root group and removes the cgroup. */
  remove(): void;
}

const MIN_QUOTA_US = 1000;
const BASE_PERIOD_US = 10_000;

/** Period and quota for a share: short periods keep throttling pauses short (≤ period − quota). */
export function quotaFor(share: number): { periodUs: number; quotaUs: number } {
  if (!(share > 0 && share <= 64)) throw new RangeError(`CPU share must be in (0, 64], got ${share}`);
  const periodUs = Math.max(BASE_PERIOD_US, Math.ceil(MIN_QUOTA_US / share));
  return { periodUs, quotaUs: Math.round(share * periodUs) };
}

export function capCpu(pid: number, name: string): CpuCap | string {
  if (process.getuid?.() !== 0) return "needs root (cgroup CPU quota)";
  const v1 = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"].find((dir) => existsSync(join(dir, "cpu.cfs_quota_us")));
  if (v1 !== undefined) return v1Cap(pid, v1, name);
  const v2 = "/sys/fs/cgroup";
  if (
    existsSync(join(v2, "cgroup.controllers")) &&
    readFileSync(join(v2, "cgroup.controllers"), "utf8").split(/\s+/).includes("cpu")
  ) {
    return v2Cap(pid, v2, name);
  }
  return "no cgroup CPU controller available (neither v1 cpu nor v2 cpu.max)";
}

function v1Cap(pid: number, root: string, name: string): CpuCap | string {
  const dir = join(root, name);
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "cgroup.procs"), String(pid));
  } catch (error) {
    return `cgroup v1 ${dir}: ${(error as Error).message}`;
  }
  return {
    set(share) {
      writeFileSync(join(dir, "cpu.cfs_quota_us"), "-1");
      if (share === undefined) return;
      const { periodUs, quotaUs } = quotaFor(share);
      writeFileSync(join(dir, "cpu.cfs_period_us"), String(periodUs));
      writeFileSync(join(dir, "cpu.cfs_quota_us"), String(quotaUs));
    },
    remove() {
      release(join(root, "cgroup.procs"), pid, dir);
    },
  };
}

function v2Cap(pid: number, root: string, name: string): CpuCap | string {
  const dir = join(root, name);
  try {
    if (!readFileSync(join(root, "cgroup.subtree_control"), "utf8").includes("cpu"))
      writeFileSync(join(root, "cgroup.subtree_control"), "+cpu");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "cgroup.procs"), String(pid));
  } catch (error) {
    return `cgroup v2 ${dir}: ${(error as Error).message}`;
  }
  return {
    set(share) {
      if (share === undefined) return writeFileSync(join(dir, "cpu.max"), "max");
      const { periodUs, quotaUs } = quotaFor(share);
      writeFileSync(join(dir, "cpu.max"), `${quotaUs} ${periodUs}`);
    },
    remove() {
      release(join(root, "cgroup.procs"), pid, dir);
    },
  };
}

function release(rootProcs: string, pid: number, dir: string): void {
  try {
    writeFileSync(rootProcs, String(pid));
  } catch {
    // The process may have exited already; the group is then empty.
  }
  try {
    rmdirSync(dir);
  } catch {
    // Still busy (a child process): left for the operator; its name says what it was.
  }
}
