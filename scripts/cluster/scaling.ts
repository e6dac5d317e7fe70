/** Adding and removing app hosts at run time through HAProxy's pre-declared slots (no reload). */
import { moduleOfTheClusterTool, ClusterError } from "./errors.ts";
import { lbAdmin, lbStatRows, waitLbState } from "./haproxy-admin.ts";
import { startHost, stopHost, terminateHost, waitReady } from "./hosts.ts";
import { appOctet, planHost, run, subnetPrefix, wireHost } from "./namespaces.ts";
import { APP_BACKEND, APP_PORT, appUrl, type ClusterState, DRAIN_DELAY_MS, hostOf, saveState } from "./state.ts";

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

if (import.meta.main) moduleOfTheClusterTool("scripts/cluster/scaling.ts");
