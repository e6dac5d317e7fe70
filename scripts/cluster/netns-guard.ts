/**
 * The topology's addresses (10.200.0.0/24 by default) exist only inside its network namespaces. From
 * the root namespace such an address is not "this machine": the default route sends it off the host
 * (to whatever owns 10.x on the real network), so a request or a load run aimed at it would hit a
 * stranger or hang (measured here: a 404 from some other machine). Tools that take a URL call
 * `refuseNamespaceTarget` first; inside any `ip netns` namespace (the client's) nothing is refused.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { moduleOfTheClusterTool } from "./errors.ts";

/** Where the cluster tool keeps its state (one directory per cluster name). */
export const STATE_ROOT = "/tmp/turnomatic-cluster";
export const DEFAULT_SUBNET = "10.200.0.0/24";

/**
 * The `ip netns` name of this process's network namespace (as `ip netns identify` finds it: the
 * bind mount under /run/netns with the same inode), or undefined outside every named namespace,
 * i.e. in the root namespace (or in a container's own one), where cluster addresses do not exist.
 */
export function currentNetns(): string | undefined {
  let own: number;
  try {
    own = statSync("/proc/self/ns/net").ino;
  } catch {
    return undefined;
  }
  if (!existsSync("/run/netns")) return undefined;
  for (const name of readdirSync("/run/netns")) {
    try {
      if (statSync(join("/run/netns", name)).ino === own) return name;
    } catch {
      // Removed meanwhile.
    }
  }
  return undefined;
}

/** The /24 prefixes ("10.200.0") of the default subnet and of every cluster with a state file. */
export function clusterPrefixes(): Map<string, string> {
  const prefixes = new Map<string, string>([[DEFAULT_SUBNET.split(".").slice(0, 3).join("."), "default"]]);
  if (!existsSync(STATE_ROOT)) return prefixes;
  for (const name of readdirSync(STATE_ROOT)) {
    try {
      const state = JSON.parse(readFileSync(join(STATE_ROOT, name, "state.json"), "utf8")) as { subnet?: string };
      if (state.subnet !== undefined) prefixes.set(state.subnet.split(".").slice(0, 3).join("."), name);
    } catch {
      // No state file (a cluster that is down) or not one of ours.
    }
  }
  return prefixes;
}

function assignedHere(address: string): boolean {
  return Object.values(networkInterfaces()).some((list) => list?.some((entry) => entry.address === address));
}

/** Error text when `url` points into a cluster's namespaces and this process cannot reach it; else undefined. */
export function namespaceTargetProblem(url: string): string | undefined {
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return undefined; // the caller's own URL check reports it
  }
  const prefix = /^(\d{1,3}\.\d{1,3}\.\d{1,3})\.\d{1,3}$/.exec(host)?.[1];
  if (prefix === undefined || currentNetns() !== undefined || assignedHere(host)) return undefined;
  const cluster = clusterPrefixes().get(prefix);
  if (cluster === undefined) return undefined;
  const client = cluster === "default" ? "tm-client" : `tm-${cluster}-client`;
  return (
    `refusing ${host}: it is an address of the cluster's network namespaces (${prefix}.0/24), and from the root ` +
    `namespace it routes off this machine. Run the command inside the client namespace instead, e.g.: ` +
    `ip netns exec ${client} curl ${url}`
  );
}

/** Throws (with the namespaced command to use) when `url` cannot be reached from here; see namespaceTargetProblem. */
export function refuseNamespaceTarget(url: string): void {
  const problem = namespaceTargetProblem(url);
  if (problem !== undefined) throw new NamespaceTargetError(problem);
}

export class NamespaceTargetError extends Error {}

if (import.meta.main) moduleOfTheClusterTool("scripts/cluster/netns-guard.ts");
