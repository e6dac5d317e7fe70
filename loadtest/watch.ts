/**
 * Which processes a load step watches the CPU of (measured with bench/toolkit/proc.ts): the
 * target's own (found by its port: every worker), `name:port` entries (--ports) and `name:pid+pid`
 * entries (--pids).
 */
import { commandName, type ProcessGroup, pidsListeningOn } from "../bench/toolkit/proc.ts";

export function watchGroups(targetPort: number, ports: readonly string[], pids: readonly string[]): ProcessGroup[] {
  const groups: ProcessGroup[] = [];
  const targetPids = pidsListeningOn(targetPort);
  if (targetPids.length > 0)
    groups.push({ name: `target (${commandName(targetPids[0] as number)} x${targetPids.length})`, pids: targetPids });
  for (const entry of ports) {
    const [name, port] = entry.split(":");
    const found = pidsListeningOn(Number(port));
    if (name !== undefined && found.length > 0) groups.push({ name, pids: found });
  }
  for (const entry of pids) {
    const [name, pid] = entry.split(":");
    if (name !== undefined && pid !== undefined) groups.push({ name, pids: pid.split("+").map(Number) });
  }
  return groups;
}
