/**
 * A local multi-host topology in Linux network namespaces: one namespace per app host, one for Redis,
 * one for HAProxy, one for the load client, all plugged into a bridge that lives in its own namespace.
 * Nothing is added to the root namespace: no link, no address, no route (the veth pairs are created
 * directly between the bridge namespace and each host namespace). The subnet (default 10.200.0.0/24)
 * therefore exists only inside the topology, and several clusters with different names can coexist.
 *
 * Every process is started with setsid inside its namespace and outlives the tool; `ip netns pids`
 * finds them again, so `stop`/`down` work from any shell even without the state file.
 */
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { processGroup } from "../../bench/toolkit/proc.ts";
import { checkWindowMs, type LbMode, parseLbMode, renderHaproxyConfig } from "./haproxy-config.ts";
import { STATE_ROOT } from "./netns-guard.ts";

const ROOT_DIR = join(import.meta.dir, "../..");
const MAIN = join(ROOT_DIR, "src/main.ts");
const PROBE = join(import.meta.dir, "probe.ts");
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
}

export class ClusterError extends Error {}

export function requireClusterRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new ClusterError(
      "the cluster tool creates network namespaces, which needs root: run it as root (e.g. sudo npm run cluster -- up).",
    );
  }
}

function validName(name: string): string {
  if (!/^[a-z0-9]{1,12}$/.test(name)) throw new ClusterError(`--name must be 1-12 lowercase letters or digits; got '${name}'.`);
  return name;
}

function namespaceOf(cluster: string, host: string): string {
  return cluster === "default" ? `tm-${host}` : `tm-${cluster}-${host}`;
}

function subnetPrefix(subnet: string): string {
  const match =
    /^(10)\.(\d{1,3})\.(\d{1,3})\.0\/24$|^(172)\.(1[6-9]|2\d|3[01])\.(\d{1,3})\.0\/24$|^(192)\.(168)\.(\d{1,3})\.0\/24$/.exec(
      subnet,
    );
  const octets = match?.slice(1).filter((part) => part !== undefined) ?? [];
  if (match === null || octets.some((octet) => Number(octet) > 255))
    throw new ClusterError(`--subnet must be a private /24 such as 10.200.0.0/24; got '${subnet}'.`);
  return octets.join(".");
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

/** The admin token of a cluster (see ClusterState.adminTokenFile); undefined for older clusters. */
export function adminToken(state: ClusterState): string | undefined {
  if (state.adminTokenFile === undefined || !existsSync(state.adminTokenFile)) return undefined;
  return readFileSync(state.adminTokenFile, "utf8").trim();
}

/** The caller's TURNOMATIC_ADMIN_TOKEN (checked as the app checks it), or a fresh random token. */
function chooseAdminToken(): string {
  const given = process.env.TURNOMATIC_ADMIN_TOKEN;
  if (given === undefined || given === "") return randomBytes(24).toString("hex");
  if (given.length < 16) throw new ClusterError("TURNOMATIC_ADMIN_TOKEN must be at least 16 characters (use a random secret).");
  return given;
}

/** Runs a command to completion; throws with its stderr when it fails (unless `allowFailure`). */
export function run(command: readonly string[], allowFailure = false): string {
  const result = Bun.spawnSync([...command], { stdout: "pipe", stderr: "pipe" });
  if (!result.success && !allowFailure) {
    throw new ClusterError(`'${command.join(" ")}' failed: ${result.stderr.toString().trim()}`);
  }
  return result.stdout.toString();
}

function planHost(
  name: string,
  host: string,
  role: Role,
  lastOctet: number | undefined,
  prefix: string,
  stateDir: string,
): HostState {
  return {
    name: host,
    role,
    namespace: namespaceOf(name, host),
    address: lastOctet === undefined ? undefined : `${prefix}.${lastOctet}`,
    bridgePort: lastOctet === undefined ? undefined : `v-${host}`,
    logFile: role === "net" || role === "client" ? undefined : join(stateDir, `${host}.log`),
  };
}

/** App host i lives at .(10+i) on the subnet: fixed, so HAProxy's slot for it can be declared up front. */
function appOctet(index: number): number {
  return 10 + index;
}

function planHosts(name: string, apps: number, prefix: string, stateDir: string): Record<string, HostState> {
  const hosts: Record<string, HostState> = {};
  const add = (host: string, role: Role, lastOctet: number | undefined) => {
    hosts[host] = planHost(name, host, role, lastOctet, prefix, stateDir);
  };
  add("net", "net", undefined);
  add("redis", "redis", 2);
  add("lb", "lb", 3);
  add("client", "client", 4);
  for (let i = 1; i <= apps; i++) add(`app${i}`, "app", appOctet(i));
  return hosts;
}

function wire(state: ClusterState): void {
  const net = state.hosts.net as HostState;
  for (const host of Object.values(state.hosts)) run(["ip", "netns", "add", host.namespace]);
  run(["ip", "-n", net.namespace, "link", "set", "lo", "up"]);
  run(["ip", "-n", net.namespace, "link", "add", "br0", "type", "bridge"]);
  run(["ip", "-n", net.namespace, "link", "set", "br0", "up"]);
  for (const host of Object.values(state.hosts)) wireHost(state, host);
}

/** Plugs one host namespace (already created) into the bridge and gives it its address. */
function wireHost(state: ClusterState, host: HostState): void {
  const net = state.hosts.net as HostState;
  if (host.bridgePort === undefined || host.address === undefined) return;
  // Both ends are born inside namespaces: the root namespace never sees this link.
  run([
    "ip",
    "-n",
    net.namespace,
    "link",
    "add",
    host.bridgePort,
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    host.namespace,
  ]);
  run(["ip", "-n", net.namespace, "link", "set", host.bridgePort, "master", "br0"]);
  run(["ip", "-n", net.namespace, "link", "set", host.bridgePort, "up"]);
  run(["ip", "-n", host.namespace, "addr", "add", `${host.address}/24`, "dev", "eth0"]);
  run(["ip", "-n", host.namespace, "link", "set", "eth0", "up"]);
  run(["ip", "-n", host.namespace, "link", "set", "lo", "up"]);
}

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
          TURNOMATIC_STORE: `redis://${redis.address}:${REDIS_PORT}`,
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

/** Pids of every process inside a namespace (empty when the namespace is gone). */
export function namespacePids(namespace: string): number[] {
  return run(["ip", "netns", "pids", namespace], true)
    .split("\n")
    .filter((line) => /^\d+$/.test(line.trim()))
    .map(Number);
}

function hostOf(state: ClusterState, name: string): HostState {
  const host = state.hosts[name];
  if (host === undefined) {
    throw new ClusterError(`no host '${name}' in cluster '${state.name}'; hosts: ${Object.keys(state.hosts).join(", ")}.`);
  }
  return host;
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

export function appUrl(state: ClusterState, name: string): string {
  return `http://${hostOf(state, name).address}:${APP_PORT}`;
}

export function appNames(state: ClusterState): string[] {
  return Object.values(state.hosts)
    .filter((host) => host.role === "app")
    .map((host) => host.name);
}

/** Brings the whole topology up and waits until the LB answers through every app host. */
export async function up(options: UpOptions = {}): Promise<ClusterState> {
  requireClusterRoot();
  const name = validName(options.name ?? "default");
  const apps = options.apps ?? 2;
  if (!Number.isInteger(apps) || apps < 1 || apps > 200) throw new ClusterError(`--apps must be 1-200; got ${apps}.`);
  const workers = options.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1 || workers > 64)
    throw new ClusterError(`--workers must be 1-64; got ${workers}.`);
  if ((options.store ?? "redis") !== "redis") {
    throw new ClusterError("--store must be redis: app hosts need a store they all reach (SQLite is one host's file).");
  }
  const subnet = options.subnet ?? "10.200.0.0/24";
  const prefix = subnetPrefix(subnet);
  const slots = options.maxApps ?? apps;
  if (!Number.isInteger(slots) || slots < apps || slots > 200)
    throw new ClusterError(`--max-apps must be an integer from --apps (${apps}) to 200; got ${slots}.`);
  let lbMode: LbMode;
  try {
    lbMode = parseLbMode(options.lbMode ?? "keepalive");
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
  const state: ClusterState = {
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
  writeFileSync(join(stateDir, "state.json"), `${JSON.stringify(state, null, 2)}\n`);
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
    startHost(state, "redis");
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

/** Namespaces of a cluster, found by name (so `down` works without, or with a stale, state file). */
export function listNamespaces(name: string): string[] {
  const pattern =
    name === "default"
      ? /^tm-(net|redis|lb|client|app\d+)$/
      : new RegExp(`^tm-${validName(name)}-(net|redis|lb|client|app\\d+)$`);
  return run(["ip", "netns", "list"], true)
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((ns) => pattern.test(ns));
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

/** HAProxy's view of each app server (UP, DOWN, MAINT, "UP 1/2"...), read over its admin socket. */
export async function lbServerStates(state: ClusterState): Promise<Record<string, string>> {
  const csv = await adminCommand(state.haproxySocket, "show stat");
  const lines = csv.split("\n");
  const header = (lines[0] ?? "").replace(/^# /, "").split(",");
  const px = header.indexOf("pxname");
  const sv = header.indexOf("svname");
  const status = header.indexOf("status");
  const result: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const cells = line.split(",");
    if (cells[px] !== "turnomatic_apps" || cells[sv] === "BACKEND" || cells[sv] === undefined) continue;
    result[cells[sv]] = cells[status] ?? "";
  }
  return result;
}

/** Per-server column of HAProxy's `show stat` (e.g. "hrsp_2xx", "stot") for the app backend. */
export async function lbServerCounter(state: ClusterState, column: string): Promise<Record<string, number>> {
  const csv = await adminCommand(state.haproxySocket, "show stat");
  const lines = csv.split("\n");
  const header = (lines[0] ?? "").replace(/^# /, "").split(",");
  const result: Record<string, number> = {};
  for (const line of lines.slice(1)) {
    const cells = line.split(",");
    const server = cells[header.indexOf("svname")];
    if (cells[header.indexOf("pxname")] !== "turnomatic_apps" || server === undefined || server === "BACKEND") continue;
    result[server] = Number(cells[header.indexOf(column)] ?? 0);
  }
  return result;
}

/** Waits until HAProxy reports every one of `servers` in `status` (exactly "UP" or "DOWN"). */
export async function waitLbState(
  state: ClusterState,
  servers: readonly string[],
  status: "UP" | "DOWN",
  timeoutMs = 20_000,
): Promise<number> {
  const started = performance.now();
  let last: Record<string, string> = {};
  while (performance.now() - started < timeoutMs) {
    try {
      last = await lbServerStates(state);
      if (servers.every((server) => last[server] === status)) return performance.now() - started;
    } catch {
      // HAProxy is still starting.
    }
    await Bun.sleep(50);
  }
  throw new ClusterError(
    `HAProxy did not report ${servers.join(", ")} ${status} within ${timeoutMs} ms: ${JSON.stringify(last)}`,
  );
}

function adminCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = "";
    const decoder = new TextDecoder();
    const timer = setTimeout(() => reject(new Error(`no answer from ${socketPath}`)), 3000);
    Bun.connect({
      unix: socketPath,
      socket: {
        open: (socket) => void socket.write(`${command}\n`),
        data: (_socket, data) => {
          output += decoder.decode(data);
        },
        close: () => {
          clearTimeout(timer);
          resolve(output);
        },
        error: (_socket, error) => {
          clearTimeout(timer);
          reject(error);
        },
      },
    }).catch((error: unknown) => {
      clearTimeout(timer);
      reject(error);
    });
  });
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

const APP_BACKEND = "turnomatic_apps";

/** Writes the state file (the autoscaler changes the set of app hosts at run time). */
export function saveState(state: ClusterState): void {
  writeFileSync(join(state.stateDir, "state.json"), `${JSON.stringify(state, null, 2)}\n`);
}

/** Sends one command to HAProxy's admin socket; throws with HAProxy's answer when it is not accepted. */
export async function lbAdmin(state: ClusterState, command: string): Promise<string> {
  const answer = (await adminCommand(state.haproxySocket, command)).trim();
  // Accepted `set server` commands answer nothing (or a line that says what changed).
  if (/^(No such|Require|Unknown|Invalid|.*not found)/i.test(answer)) {
    throw new ClusterError(`HAProxy refused '${command}': ${answer}`);
  }
  return answer;
}

/** One row of `show stat` per app server (and BACKEND), as column -> value. */
export async function lbStatRows(state: ClusterState): Promise<Record<string, Record<string, string>>> {
  const csv = await adminCommand(state.haproxySocket, "show stat");
  const lines = csv.split("\n");
  const header = (lines[0] ?? "").replace(/^# /, "").split(",");
  const rows: Record<string, Record<string, string>> = {};
  for (const line of lines.slice(1)) {
    const cells = line.split(",");
    if (cells[header.indexOf("pxname")] !== APP_BACKEND) continue;
    const row: Record<string, string> = {};
    header.forEach((column, i) => {
      row[column] = cells[i] ?? "";
    });
    rows[row.svname ?? ""] = row;
  }
  return rows;
}

/** Indices of the HAProxy slots that have no host (app3 -> 3), lowest first. */
export function freeAppSlots(state: ClusterState): number[] {
  const slots = state.slots ?? state.apps;
  return Array.from({ length: slots }, (_, i) => i + 1).filter((i) => state.hosts[`app${i}`] === undefined);
}

/**
 * Adds an app host into the lowest free HAProxy slot: new namespace on the bridge, app process, wait
 * until it is ready, then point the slot at it and enable it over the admin socket (no reload: the
 * connections in flight are not touched). Returns the new state (also written to the state file).
 */
export async function addAppHost(state: ClusterState): Promise<{ state: ClusterState; host: string }> {
  const index = freeAppSlots(state)[0];
  if (index === undefined) {
    throw new ClusterError(
      `cluster '${state.name}' has no free HAProxy slot (${state.slots ?? state.apps} declared); bring it up with a larger --max-apps.`,
    );
  }
  const name = `app${index}`;
  const host = planHost(state.name, name, "app", appOctet(index), subnetPrefix(state.subnet), state.stateDir);
  const next: ClusterState = { ...state, hosts: { ...state.hosts, [name]: host } };
  run(["ip", "netns", "add", host.namespace]);
  // Recorded before anything can fail half-way, so that `down` and a later scale-in find it.
  saveState(next);
  wireHost(next, host);
  startHost(next, name);
  await waitReady(next, [`${appUrl(next, name)}/readyz`]);
  await lbAdmin(next, `set server ${APP_BACKEND}/${name} addr ${host.address} port ${APP_PORT}`);
  await lbAdmin(next, `set server ${APP_BACKEND}/${name} state ready`);
  await waitLbState(next, [name], "UP");
  return { state: next, host: name };
}

/**
 * Removes an app host without failing a request: drain in HAProxy (no new requests), wait until its
 * current sessions reached 0, maintenance, SIGTERM (the app's own graceful drain), remove the
 * namespace. Returns the new state (also written to the state file).
 */
export async function removeAppHost(state: ClusterState, name: string, timeoutMs = 30_000): Promise<ClusterState> {
  const host = hostOf(state, name);
  if (host.role !== "app") throw new ClusterError(`host '${name}' is not an app host.`);
  await lbAdmin(state, `set server ${APP_BACKEND}/${name} state drain`);
  const until = performance.now() + timeoutMs;
  while (performance.now() < until) {
    const row = (await lbStatRows(state))[name];
    if (row === undefined || (Number(row.scur) === 0 && Number(row.qcur) === 0)) break;
    await Bun.sleep(50);
  }
  await lbAdmin(state, `set server ${APP_BACKEND}/${name} state maint`);
  if (!(await terminateHost(state, name, DRAIN_DELAY_MS + 15_000))) stopHost(state, name);
  // Deleting the namespace deletes its veth end, and with it the bridge-side peer.
  run(["ip", "netns", "del", host.namespace], true);
  const hosts = { ...state.hosts };
  delete hosts[name];
  const next: ClusterState = { ...state, hosts };
  saveState(next);
  return next;
}

if (import.meta.main) {
  // A module of the cluster tool, not a command of its own.
  const help = process.argv.includes("--help") || process.argv.includes("-h");
  (help ? process.stdout : process.stderr).write(
    "usage: scripts/cluster/topology.ts is a module of the cluster tool; run: npm run cluster -- --help\n",
  );
  process.exit(help ? 0 : 2);
}
