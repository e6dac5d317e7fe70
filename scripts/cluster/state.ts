/**
 * A cluster's state: what `up` planned (hosts, addresses, ports, files), kept in a state file under
 * STATE_ROOT so that every command, from any shell, finds the cluster again. The one place for the
 * topology's constants and defaults.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ClusterError, moduleOfTheClusterTool } from "./errors.ts";
import { checkWindowMs, type LbMode } from "./haproxy-config.ts";
import { listNamespaces, validName } from "./namespaces.ts";
import { DEFAULT_SUBNET, STATE_ROOT } from "./netns-guard.ts";

export { STATE_ROOT };

export const APP_PORT = 7017;
export const APP_METRICS_PORT = 9464;
export const LB_PORT = 80;
export const LB_STATS_PORT = 8404;
export const REDIS_PORT = 6379;
/** HAProxy health checks: every 500 ms, down after 2 failures, up after 2 passes. */
export const CHECK = { interMs: 500, fall: 2, rise: 2 } as const;
/** Apps keep serving this long after SIGTERM with /readyz failing: longer than HAProxy's check window. */
export const DRAIN_DELAY_MS = checkWindowMs({ checkInterMs: CHECK.interMs, checkFall: CHECK.fall }) + 1000;
/** The app backend's name in HAProxy's configuration and admin socket. */
export const APP_BACKEND = "turnomatic_apps";

/** What `up` does when an option is not given (the cluster CLI shows and uses the same). */
export const CLUSTER_DEFAULTS = {
  name: "default",
  apps: 2,
  workers: 1,
  store: "redis",
  subnet: DEFAULT_SUBNET,
  lbMode: "keepalive",
} as const;

export type Role = "net" | "redis" | "lb" | "client" | "app";

export interface HostState {
  readonly name: string;
  readonly role: Role;
  readonly namespace: string;
  /** Address on the topology's subnet (none for the bridge namespace). */
  readonly address: string | undefined;
  /** The bridge-side end of this host's veth pair (in the net namespace): `link HOST down` acts on it. */
  readonly bridgePort: string | undefined;
  readonly logFile: string | undefined;
}

export interface ClusterState {
  readonly name: string;
  readonly subnet: string;
  readonly apps: number;
  readonly workers: number;
  readonly store: "redis";
  readonly stateDir: string;
  readonly lbUrl: string;
  readonly lbStatsUrl: string;
  readonly haproxySocket: string;
  /** HAProxy's connection mode (absent in state files written before it existed: strict). */
  readonly lbMode?: LbMode;
  /**
   * File (mode 0600) holding the admin token every app host gets as TURNOMATIC_ADMIN_TOKEN: the
   * caller's TURNOMATIC_ADMIN_TOKEN, or a random one. Absent in older state files.
   */
  readonly adminTokenFile?: string;
  /**
   * App server slots declared in HAProxy (app1..appN; those without a host are in maintenance). The
   * autoscaler adds hosts only into these. Absent in state files of clusters without spare slots.
   */
  readonly slots?: number;
  readonly hosts: Record<string, HostState>;
  /**
   * TURNOMATIC_STORE of the app hosts when the caller runs the store itself inside the redis
   * namespace (UpOptions.externalStore); absent: the topology's own Redis at the redis host.
   */
  readonly storeUrl?: string;
}

export interface UpOptions {
  /** Cluster name: namespaces are tm-<host> for "default", tm-<name>-<host> otherwise. Default "default". */
  readonly name?: string;
  /** App hosts. Default 2. */
  readonly apps?: number;
  /** Worker processes per app host. Default 1. */
  readonly workers?: number;
  /** Store of the apps; only "redis" (shared by all hosts). Default "redis". */
  readonly store?: string;
  /** A /24 that exists only inside the topology. Default 10.200.0.0/24. */
  readonly subnet?: string;
  /**
   * HAProxy server slots (>= apps): the spare ones are declared disabled so that `autoscale` can add
   * hosts up to this many without reloading HAProxy. Default: apps (no spare slot).
   */
  readonly maxApps?: number;
  /** HAProxy's connection mode (see scripts/cluster/haproxy-config.ts). Default "keepalive". */
  readonly lbMode?: string;
  /**
   * Runs the store instead of the topology's single Redis: called once the namespaces are wired and
   * before the app hosts start, it starts its processes inside the redis namespace (spawnIn; `down`
   * kills them with the namespace) and returns the apps' TURNOMATIC_STORE. Used by the nemesis run
   * (test/nemesis/) for Sentinel and Cluster deployments.
   */
  readonly externalStore?: (state: ClusterState) => Promise<string>;
}

export function stateDirOf(name: string): string {
  return join(STATE_ROOT, validName(name));
}

/**
 * The state of a cluster that is up. A state file without the cluster's namespaces (after `down` from
 * an older version, a reboot, or someone deleting the namespaces) is stale: refused, not shown.
 */
export function loadState(name = "default"): ClusterState {
  const file = join(stateDirOf(name), "state.json");
  const up = `start it with: npm run cluster -- up${name === "default" ? "" : ` --name ${name}`}`;
  if (!existsSync(file)) throw new ClusterError(`no cluster '${name}' is up (no ${file}); ${up}`);
  if (listNamespaces(name).length === 0) {
    throw new ClusterError(`no cluster '${name}' is up (its namespaces are gone; ${file} is stale); ${up}`);
  }
  return JSON.parse(readFileSync(file, "utf8")) as ClusterState;
}

/** Writes the state file (the autoscaler changes the set of app hosts at run time). */
export function saveState(state: ClusterState): void {
  writeFileSync(join(state.stateDir, "state.json"), `${JSON.stringify(state, null, 2)}\n`);
}

/** The admin token of a cluster (see ClusterState.adminTokenFile); undefined for older clusters. */
export function adminToken(state: ClusterState): string | undefined {
  if (state.adminTokenFile === undefined || !existsSync(state.adminTokenFile)) return undefined;
  return readFileSync(state.adminTokenFile, "utf8").trim();
}

export function hostOf(state: ClusterState, name: string): HostState {
  const host = state.hosts[name];
  if (host === undefined) {
    throw new ClusterError(`no host '${name}' in cluster '${state.name}'; hosts: ${Object.keys(state.hosts).join(", ")}.`);
  }
  return host;
}

export function appUrl(state: ClusterState, name: string): string {
  return `http://${hostOf(state, name).address}:${APP_PORT}`;
}

export function appNames(state: ClusterState): string[] {
  return Object.values(state.hosts)
    .filter((host) => host.role === "app")
    .map((host) => host.name);
}

if (import.meta.main) moduleOfTheClusterTool("scripts/cluster/state.ts");
