/**
 * The processes of the topology: each host's command (Redis, HAProxy or Turnomatic), started with
 * setsid inside its namespace so that it outlives the tool (`ip netns pids` finds it again, so
 * `stop`/`down` work from any shell even without the state file), stopped, and waited for.
 */
import { closeSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { processGroup } from "../../bench/toolkit/proc.ts";
import { ClusterError, moduleOfTheClusterTool } from "./errors.ts";
import { namespacePids, run } from "./namespaces.ts";
import {
  adminToken,
  APP_METRICS_PORT,
  APP_PORT,
  type ClusterState,
  DRAIN_DELAY_MS,
  type HostState,
  hostOf,
  REDIS_PORT,
} from "./state.ts";

const ROOT_DIR = join(import.meta.dir, "../..");
const MAIN = join(ROOT_DIR, "src/main.ts");
const PROBE = join(import.meta.dir, "probe.ts");

function commandOf(state: ClusterState, host: HostState): { argv: string[]; env: Record<string, string> } {
  const redis = state.hosts.redis as HostState;
  switch (host.role) {
    case "redis": {
      const dir = join(state.stateDir, "redis");
      mkdirSync(dir, { recursive: true });
      // appendfsync always: a reservation is on disk before its numbers go out, as in production.
      const argv = ["redis-server", "--bind", `${host.address} 127.0.0.1`, "--port", String(REDIS_PORT)];
      argv.push("--protected-mode", "no", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir);
      return { argv, env: {} };
    }
    case "lb":
      return { argv: ["haproxy", "-db", "-f", join(state.stateDir, "haproxy.cfg")], env: {} };
    case "app":
      return {
        argv: [process.execPath, "--max-http-header-size=16384", MAIN],
        env: {
          HOST: "0.0.0.0",
          PORT: String(APP_PORT),
          METRICS_PORT: String(APP_METRICS_PORT),
          TURNOMATIC_STORE: state.storeUrl ?? `redis://${redis.address}:${REDIS_PORT}`,
          TURNOMATIC_WORKERS: String(state.workers),
          TURNOMATIC_DRAIN_DELAY_MS: String(DRAIN_DELAY_MS),
          // Each host's own record of the store (store-guard.ts), kept across its restarts and
          // removed with the cluster, so a new cluster's empty Redis is not taken for a lost one.
          TURNOMATIC_STATE_DIR: join(state.stateDir, host.name, "state"),
          ...appAdminEnv(state),
        },
      };
    default:
      throw new ClusterError(`host '${host.name}' runs no process (role ${host.role}).`);
  }
}

/** Every app host gets the cluster's admin token; clusters from before the token file keep the caller's. */
function appAdminEnv(state: ClusterState): Record<string, string> {
  const token = adminToken(state) ?? process.env.TURNOMATIC_ADMIN_TOKEN;
  return token === undefined || token === "" ? {} : { TURNOMATIC_ADMIN_TOKEN: token };
}

/** Starts a host's process (Redis, HAProxy or Turnomatic) inside its namespace, detached. */
export function startHost(state: ClusterState, name: string): number {
  const host = hostOf(state, name);
  if (namespacePids(host.namespace).length > 0) throw new ClusterError(`host '${name}' is already running; stop it first.`);
  const { argv, env } = commandOf(state, host);
  const log = openSync(host.logFile as string, "a");
  try {
    const child = Bun.spawn(["setsid", "ip", "netns", "exec", host.namespace, ...argv], {
      env: { ...process.env, ...env },
      cwd: ROOT_DIR,
      stdio: ["ignore", log, log],
    });
    child.unref();
    return child.pid;
  } finally {
    closeSync(log);
  }
}

/** kill -9 every process of a host (a crash, as far as its peers can tell). */
export function stopHost(state: ClusterState, name: string): number[] {
  const pids = namespacePids(hostOf(state, name).namespace);
  // One kill(2) per process group first, so the supervisor and its workers die at the same instant
  // (one by one, a worker would notice its supervisor's death and start draining first).
  const ownGroup = processGroup(process.pid);
  for (const group of new Set(pids.map(processGroup))) {
    // Hosts run in their own sessions (setsid); never signal the group this tool runs in.
    if (group !== ownGroup && pids.includes(group)) signal(-group, "SIGKILL");
  }
  for (const pid of pids) signal(pid, "SIGKILL");
  return pids;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

/** Sends SIGTERM to a host's processes and waits until they all exited (false on timeout). */
export async function terminateHost(state: ClusterState, name: string, timeoutMs: number): Promise<boolean> {
  const host = hostOf(state, name);
  for (const pid of namespacePids(host.namespace)) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // Already gone.
    }
  }
  const until = performance.now() + timeoutMs;
  while (performance.now() < until) {
    if (namespacePids(host.namespace).length === 0) return true;
    await Bun.sleep(50);
  }
  return false;
}

export function setLink(state: ClusterState, name: string, up: boolean): void {
  const host = hostOf(state, name);
  if (host.bridgePort === undefined) throw new ClusterError(`host '${name}' has no link.`);
  run(["ip", "-n", (state.hosts.net as HostState).namespace, "link", "set", host.bridgePort, up ? "up" : "down"]);
}

/** Runs a command inside a host's namespace (e.g. the load client in `client`). */
export function spawnIn(
  state: ClusterState,
  name: string,
  argv: readonly string[],
  options: Parameters<typeof Bun.spawn>[1] = {},
) {
  return Bun.spawn(["ip", "netns", "exec", hostOf(state, name).namespace, ...argv], { cwd: ROOT_DIR, ...options });
}

/** Waits (from inside the client namespace) until every URL answers 200. */
export async function waitReady(state: ClusterState, urls: readonly string[], timeoutMs = 20_000): Promise<void> {
  const probe = spawnIn(state, "client", [process.execPath, PROBE, String(timeoutMs), ...urls], {
    stdout: "pipe",
    stderr: "pipe",
  });
  if ((await probe.exited) !== 0)
    throw new ClusterError(`not ready: ${(await new Response(probe.stderr as ReadableStream<Uint8Array>).text()).trim()}`);
}

if (import.meta.main) moduleOfTheClusterTool("scripts/cluster/hosts.ts");
