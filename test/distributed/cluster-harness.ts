/**
 * Shared steps of the distributed tests: bring a named cluster up (and always down), run the load
 * client inside the client namespace, and judge its whole history with the history checker.
 */
import { afterAll } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import type { LbMode } from "../../scripts/cluster/haproxy-config.ts";
import { type ClusterState, down, spawnIn, up } from "../../scripts/cluster/topology.ts";
import { requireBinary, requireRoot } from "../../harness/binaries.ts";
import { checkHistory, type HistoryEntry, type Verdict } from "../../harness/history-checker.ts";
import type { LoadClientOptions, LoadClientResult } from "./load-client.ts";

/** TURNOMATIC_FULL=1: the long variant (>= 100k requests); otherwise the short CI variant. */
export const FULL = process.env.TURNOMATIC_FULL === "1";

const LOAD_CLIENT = join(import.meta.dir, "load-client.ts");

export function requireClusterPrerequisites(): void {
  requireRoot("network namespaces (the distributed tests build a multi-host topology)");
  requireBinary("ip", "apt-get install iproute2");
  requireBinary("haproxy");
  requireBinary("redis-server");
}

/** For afterAll: removes the cluster (a no-op without root, where the test already failed loudly). */
export function removeCluster(name: string): void {
  if (process.getuid?.() === 0) down(name);
}

/**
 * One test file's cluster `name`: removed after the file's tests (and on Ctrl-C). The function it
 * returns checks the prerequisites (failing loudly without root or a binary) and brings the cluster
 * up, again, for one test; `lbMode` defaults to the production default (keepalive).
 */
export function useCluster(name: string): (apps?: number, workers?: number, lbMode?: LbMode) => Promise<ClusterState> {
  afterAll(() => removeCluster(name));
  return (apps, workers, lbMode) => {
    requireClusterPrerequisites();
    return startCluster(name, apps, workers, lbMode);
  };
}

/** Brings a cluster up for one test (through useCluster). */
async function startCluster(name: string, apps = 2, workers = 2, lbMode?: LbMode): Promise<ClusterState> {
  down(name); // leftovers of a crashed earlier run of this same test
  started.add(name);
  return up({ name, apps, workers, ...(lbMode === undefined ? {} : { lbMode }) });
}

// Ctrl-C (or a kill) of `bun test` skips afterAll: remove this run's clusters here, then exit.
const started = new Set<string>();

/** For clusters brought up without startCluster (test/nemesis): removed on SIGINT/SIGTERM too. */
export function removeOnSignal(name: string): void {
  started.add(name);
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    for (const name of started) removeCluster(name);
    process.exit(130);
  });
}

export interface RunningLoad<R = LoadClientResult> {
  /** Requests completed so far (from the client's progress lines). */
  completed(): number;
  /** Waits until at least `count` requests completed (or the load ended). */
  reach(count: number, timeoutMs?: number): Promise<void>;
  finished: Promise<R>;
  /** Ends the load early: no new requests, in-flight ones complete, the history is written. */
  stop(): Promise<R>;
  process: Subprocess;
}

export function startLoad(
  state: ClusterState,
  options: Omit<LoadClientOptions, "url" | "out" | "timeoutMs"> & { timeoutMs?: number },
): RunningLoad {
  return startRunner<LoadClientResult>(state, LOAD_CLIENT, { timeoutMs: 10_000, ...options });
}

/**
 * Runs `script` (a bun program that takes one JSON argument with `url` and `out`, prints
 * "progress N" / "done N" lines and writes its result JSON to `out`) inside the client namespace.
 */
export function startRunner<R>(state: ClusterState, script: string, options: object): RunningLoad<R> {
  const out = join(state.stateDir, `history-${Date.now()}.json`);
  const full = { url: state.lbUrl, out, ...options };
  const child = spawnIn(state, "client", [process.execPath, script, JSON.stringify(full)], {
    stdout: "pipe",
    stderr: "pipe",
  });
  let completed = 0;
  let ended = false;
  const reader = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout as ReadableStream<Uint8Array>) {
      for (const match of decoder.decode(chunk).matchAll(/(?:progress|done) (\d+)/g)) completed = Number(match[1]);
    }
  })();
  const finished = (async () => {
    const code = await child.exited;
    await reader;
    ended = true;
    if (code !== 0) {
      throw new Error(
        `load client exited with ${code}: ${await new Response(child.stderr as ReadableStream<Uint8Array>).text()}`,
      );
    }
    const result = JSON.parse(readFileSync(out, "utf8")) as R;
    rmSync(out, { force: true });
    return result;
  })();
  finished.catch(() => {});
  return {
    completed: () => completed,
    reach: async (count, timeoutMs = 120_000) => {
      const until = performance.now() + timeoutMs;
      while (completed < count && !ended && performance.now() < until) await Bun.sleep(20);
      if (completed < count && !ended) throw new Error(`load reached only ${completed} of ${count} requests in ${timeoutMs} ms`);
    },
    finished,
    stop: () => {
      child.kill("SIGTERM");
      return finished;
    },
    process: child,
  };
}

export function judge(result: LoadClientResult, faults: boolean): Verdict {
  return checkHistory(result.history, { after: new Map(Object.entries(result.after)), faults });
}

export function failures(history: readonly HistoryEntry[]): HistoryEntry[] {
  return history.filter((entry) => entry.status === 0 || entry.status >= 500);
}

export function statusCounts(history: readonly HistoryEntry[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const entry of history) counts[entry.status] = (counts[entry.status] ?? 0) + 1;
  return counts;
}

export function uniqueIds(prefix: string, count: number): string[] {
  const run = Math.random().toString(36).slice(2, 8);
  return Array.from({ length: count }, (_, i) => `${prefix}-${run}-${i}`);
}
