/**
 * The network side of the topology: names, addresses and namespaces. One namespace per host, all
 * plugged into a bridge that lives in its own namespace; nothing is added to the root namespace (the
 * veth pairs are created directly between the bridge namespace and each host namespace).
 */
import { join } from "node:path";
import { ClusterError, moduleOfTheClusterTool } from "./errors.ts";
import type { ClusterState, HostState, Role } from "./state.ts";

export function validName(name: string): string {
  if (!/^[a-z0-9]{1,12}$/.test(name)) throw new ClusterError(`--name must be 1-12 lowercase letters or digits; got '${name}'.`);
  return name;
}

export function namespaceOf(cluster: string, host: string): string {
  return cluster === "default" ? `tm-${host}` : `tm-${cluster}-${host}`;
}

export function subnetPrefix(subnet: string): string {
  const match =
    /^(10)\.(\d{1,3})\.(\d{1,3})\.0\/24$|^(172)\.(1[6-9]|2\d|3[01])\.(\d{1,3})\.0\/24$|^(192)\.(168)\.(\d{1,3})\.0\/24$/.exec(
      subnet,
    );
  const octets = match?.slice(1).filter((part) => part !== undefined) ?? [];
  if (match === null || octets.some((octet) => Number(octet) > 255))
    throw new ClusterError(`--subnet must be a private /24 such as 10.200.0.0/24; got '${subnet}'.`);
  return octets.join(".");
}

/** Runs a command to completion; throws with its stderr when it fails (unless `allowFailure`). */
export function run(command: readonly string[], allowFailure = false): string {
  const result = Bun.spawnSync([...command], { stdout: "pipe", stderr: "pipe" });
  if (!result.success && !allowFailure) {
    throw new ClusterError(`'${command.join(" ")}' failed: ${result.stderr.toString().trim()}`);
  }
  return result.stdout.toString();
}

export function planHost(
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
export function appOctet(index: number): number {
  return 10 + index;
}

export function planHosts(name: string, apps: number, prefix: string, stateDir: string): Record<string, HostState> {
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

export function wire(state: ClusterState): void {
  const net = state.hosts.net as HostState;
  for (const host of Object.values(state.hosts)) run(["ip", "netns", "add", host.namespace]);
  run(["ip", "-n", net.namespace, "link", "set", "lo", "up"]);
  run(["ip", "-n", net.namespace, "link", "add", "br0", "type", "bridge"]);
  run(["ip", "-n", net.namespace, "link", "set", "br0", "up"]);
  for (const host of Object.values(state.hosts)) wireHost(state, host);
}

/** Plugs one host namespace (already created) into the bridge and gives it its address. */
export function wireHost(state: ClusterState, host: HostState): void {
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

/** Pids of every process inside a namespace (empty when the namespace is gone). */
export function namespacePids(namespace: string): number[] {
  return run(["ip", "netns", "pids", namespace], true)
    .split("\n")
    .filter((line) => /^\d+$/.test(line.trim()))
    .map(Number);
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

if (import.meta.main) moduleOfTheClusterTool("scripts/cluster/namespaces.ts");
