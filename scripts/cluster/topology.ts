/**
 * A local multi-host topology in Linux network namespaces: one namespace per app host, one for Redis,
 * one for HAProxy, one for the load client, all plugged into a bridge that lives in its own namespace.
 * Nothing is added to the root namespace: no link, no address, no route (the veth pairs are created
 * directly between the bridge namespace and each host namespace). The subnet (default 10.200.0.0/24)
 * therefore exists only inside the topology, and several clusters with different names can coexist.
 *
 * This module brings a whole cluster up and down and reports its status; the parts live beside it:
 * state.ts (state file, constants, defaults), namespaces.ts (names, addresses, wiring), hosts.ts
 * (processes), haproxy-admin.ts (HAProxy's runtime API) and scaling.ts (adding and removing hosts).
 * It re-exports them, so callers import the topology from one place.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ClusterError, moduleOfTheClusterTool, requireClusterRoot } from "./errors.ts";
import { type LbMode, parseLbMode, renderHaproxyConfig } from "./haproxy-config.ts";
import { lbServerStates, waitLbState } from "./haproxy-admin.ts";
import { startHost, waitReady } from "./hosts.ts";
import { appOctet, listNamespaces, namespacePids, planHosts, run, subnetPrefix, validName, wire } from "./namespaces.ts";
import {
  APP_PORT,
  appNames,
  appUrl,
  CHECK,
  CLUSTER_DEFAULTS,
  type ClusterState,
  type HostState,
  LB_PORT,
  LB_STATS_PORT,
  saveState,
  stateDirOf,
  type UpOptions,
} from "./state.ts";

export * from "./errors.ts";
export * from "./haproxy-admin.ts";
export * from "./hosts.ts";
export { listNamespaces, namespacePids, run } from "./namespaces.ts";
export * from "./scaling.ts";
export * from "./state.ts";

/** The caller's TURNOMATIC_ADMIN_TOKEN (checked as the app checks it), or a fresh random token. */
function chooseAdminToken(): string {
  const given = process.env.TURNOMATIC_ADMIN_TOKEN;
  if (given === undefined || given === "") return randomBytes(24).toString("hex");
  if (given.length < 16) throw new ClusterError("TURNOMATIC_ADMIN_TOKEN must be at least 16 characters (use a random secret).");
  return given;
}

/** Brings the whole topology up and waits until the LB answers through every app host. */
export async function up(options: UpOptions = {}): Promise<ClusterState> {
  requireClusterRoot();
  const name = validName(options.name ?? CLUSTER_DEFAULTS.name);
  const apps = options.apps ?? CLUSTER_DEFAULTS.apps;
  if (!Number.isInteger(apps) || apps < 1 || apps > 200) throw new ClusterError(`--apps must be 1-200; got ${apps}.`);
  const workers = options.workers ?? CLUSTER_DEFAULTS.workers;
  if (!Number.isInteger(workers) || workers < 1 || workers > 64)
    throw new ClusterError(`--workers must be 1-64; got ${workers}.`);
  if ((options.store ?? CLUSTER_DEFAULTS.store) !== "redis") {
    throw new ClusterError("--store must be redis: app hosts need a store they all reach (SQLite is one host's file).");
  }
  const subnet = options.subnet ?? CLUSTER_DEFAULTS.subnet;
  const prefix = subnetPrefix(subnet);
  const slots = options.maxApps ?? apps;
  if (!Number.isInteger(slots) || slots < apps || slots > 200)
    throw new ClusterError(`--max-apps must be an integer from --apps (${apps}) to 200; got ${slots}.`);
  let lbMode: LbMode;
  try {
    lbMode = parseLbMode(options.lbMode ?? CLUSTER_DEFAULTS.lbMode);
  } catch (error) {
    throw new ClusterError((error as Error).message);
  }
  const token = chooseAdminToken();
  if (listNamespaces(name).length > 0) {
    throw new ClusterError(`cluster '${name}' is already up (namespaces exist); run: npm run cluster -- down --name ${name}`);
  }
  const stateDir = stateDirOf(name);
  // Nothing of this cluster runs (checked above): start with fresh logs and no old histories.
  rmSync(stateDir, { recursive: true, force: true });
  mkdirSync(stateDir, { recursive: true });
  const hosts = planHosts(name, apps, prefix, stateDir);
  const lb = hosts.lb as HostState;
  let state: ClusterState = {
    name,
    subnet,
    apps,
    workers,
    store: "redis",
    stateDir,
    lbUrl: `http://${lb.address}:${LB_PORT}`,
    lbStatsUrl: `http://${lb.address}:${LB_STATS_PORT}/metrics`,
    haproxySocket: join(stateDir, "haproxy.sock"),
    lbMode,
    adminTokenFile: join(stateDir, "admin-token"),
    slots,
    hosts,
  };
  writeFileSync(state.adminTokenFile as string, `${token}\n`, { mode: 0o600 });
  saveState(state);
  try {
    wire(state);
    writeFileSync(
      join(stateDir, "haproxy.cfg"),
      renderHaproxyConfig({
        servers: Array.from({ length: slots }, (_, i) => ({
          name: `app${i + 1}`,
          address: `${prefix}.${appOctet(i + 1)}`,
          port: APP_PORT,
          disabled: i >= apps,
        })),
        bind: `${lb.address}:${LB_PORT}`,
        statsBind: `${lb.address}:${LB_STATS_PORT}`,
        statsSocket: state.haproxySocket,
        checkInterMs: CHECK.interMs,
        checkFall: CHECK.fall,
        checkRise: CHECK.rise,
        lbMode,
      }),
    );
    if (options.externalStore === undefined) startHost(state, "redis");
    else {
      state = { ...state, storeUrl: await options.externalStore(state) };
      saveState(state);
    }
    for (const app of appNames(state)) startHost(state, app);
    startHost(state, "lb");
    await waitReady(state, [...appNames(state).map((app) => `${appUrl(state, app)}/readyz`), `${state.lbUrl}/readyz`]);
    await waitLbState(state, appNames(state), "UP");
  } catch (error) {
    down(name);
    throw error;
  }
  return state;
}

/** Kills every process of the cluster and removes its namespaces. Idempotent. */
export function down(name = "default"): string[] {
  requireClusterRoot();
  const namespaces = listNamespaces(name);
  for (const ns of namespaces) {
    for (const pid of namespacePids(ns)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
  for (const ns of namespaces) run(["ip", "netns", "del", ns], true);
  // The logs stay (for a post-mortem); the state file goes, so nothing shows a cluster that is gone.
  rmSync(join(stateDirOf(name), "state.json"), { force: true });
  return namespaces;
}

/** The `status --json` document: each host's role, namespace, address, pids, link state. */
export async function status(state: ClusterState): Promise<Record<string, unknown>> {
  const net = state.hosts.net as HostState;
  const lbStates = await lbServerStates(state).catch(() => ({}) as Record<string, string>);
  const hosts = Object.values(state.hosts).map((host) => {
    const link =
      host.bridgePort === undefined
        ? undefined
        : /state UP|,UP[,>]/.test(run(["ip", "-n", net.namespace, "link", "show", host.bridgePort], true))
          ? "up"
          : "down";
    return {
      name: host.name,
      role: host.role,
      namespace: host.namespace,
      address: host.address,
      pids: namespacePids(host.namespace),
      link,
      lb: lbStates[host.name],
      url: host.role === "app" ? appUrl(state, host.name) : undefined,
      log: host.logFile,
    };
  });
  return {
    name: state.name,
    up: true,
    subnet: state.subnet,
    lbMode: state.lbMode ?? "strict",
    lbUrl: state.lbUrl,
    lbMetricsUrl: state.lbStatsUrl,
    clientNamespace: state.hosts.client?.namespace,
    adminTokenFile: state.adminTokenFile,
    hosts,
  };
}

if (import.meta.main) moduleOfTheClusterTool("scripts/cluster/topology.ts");
