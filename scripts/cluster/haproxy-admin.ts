/** HAProxy's runtime API over its admin socket: server states, per-server counters, runtime commands. */
import { ClusterError, moduleOfTheClusterTool } from "./errors.ts";
import { APP_BACKEND, type ClusterState } from "./state.ts";

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

/** HAProxy's view of each app server (UP, DOWN, MAINT, "UP 1/2"...), read over its admin socket. */
export async function lbServerStates(state: ClusterState): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const [server, row] of Object.entries(await lbStatRows(state))) {
    if (server !== "BACKEND") result[server] = row.status ?? "";
  }
  return result;
}

/** Per-server column of HAProxy's `show stat` (e.g. "hrsp_2xx", "stot") for the app backend. */
export async function lbServerCounter(state: ClusterState, column: string): Promise<Record<string, number>> {
  const result: Record<string, number> = {};
  for (const [server, row] of Object.entries(await lbStatRows(state))) {
    if (server !== "BACKEND") result[server] = Number(row[column] ?? 0);
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

/** Sends one command to HAProxy's admin socket; throws with HAProxy's answer when it is not accepted. */
export async function lbAdmin(state: ClusterState, command: string): Promise<string> {
  const answer = (await adminCommand(state.haproxySocket, command)).trim();
  // Accepted `set server` commands answer nothing (or a line that says what changed).
  if (/^(No such|Require|Unknown|Invalid|.*not found)/i.test(answer)) {
    throw new ClusterError(`HAProxy refused '${command}': ${answer}`);
  }
  return answer;
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

if (import.meta.main) moduleOfTheClusterTool("scripts/cluster/haproxy-admin.ts");
