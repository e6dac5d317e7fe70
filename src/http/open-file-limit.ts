/**
 * Bun.serve has no connection cap. A process that runs out of file descriptors cannot accept new
 * connections, and Bun then spins a core retrying the accept until some connections close (measured:
 * 400 idle connections against a 200-descriptor limit kept the process at 100 % CPU, new clients
 * waiting, until the flood closed). The cap that matters is therefore the open-file limit, set by the
 * operator (systemd LimitNOFILE, `ulimit -n`, container ulimits) well above what the load balancer
 * sends (deploy/haproxy: maxconn 512 per server). This reads it so start-up can warn when it is low.
 */
import { readFileSync } from "node:fs";

/** Below this soft limit the start-up log warns (each connection, store link and file takes one). */
export const LOW_OPEN_FILE_LIMIT = 4096;

/** The process's soft open-file limit from /proc (Linux); undefined where it cannot be read. */
export function openFileLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/limits", "utf8");
    } catch {
      return undefined;
    }
  }
  const soft = /^Max open files\s+(\S+)/m.exec(text)?.[1];
  if (soft === undefined) return undefined;
  return soft === "unlimited" ? Number.POSITIVE_INFINITY : Number(soft);
}
