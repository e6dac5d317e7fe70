/**
 * The HAProxy template never resends a request that reached an app, and does retry (elsewhere) a
 * request whose connection could not be made, in both connection modes (keepalive, the default, and
 * strict). Real haproxy on loopback, two backends:
 * - "a" takes each turn request and then dies on it (reset, or close without an answer), or
 *   refuses connections; it answers health checks so that HAProxy keeps routing to it. In the
 *   "reuse-*" modes it answers the first request of each connection (keep-alive) and dies on the
 *   second: the request HAProxy sent on a *reused* pooled server connection (keepalive mode's
 *   `http-reuse safe`), the case where a proxy is most tempted to resend;
 * - "b" answers 200.
 * Every request carries a unique X-Req; one seen by both a and b (or twice by a) was resent: a turn
 * counted twice. The clients never resend on their own (one connection per request, or our raw
 * keep-alive client), so anything seen twice was resent by HAProxy.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server as NetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LbMode, renderHaproxyConfig } from "../../scripts/cluster/haproxy-config.ts";
import { requireBinary } from "../../harness/binaries.ts";
import { freePort, waitFor } from "../../harness/ports.ts";
import { RawKeepAliveConnection } from "../../harness/raw-keepalive-client.ts";

type Mode = "reset" | "close" | "refuse" | "reuse-reset" | "reuse-close";

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function requestId(text: string): string | undefined {
  return /\r\nx-req: (\d+)/i.exec(text)?.[1];
}

/**
 * Backend "a": answers /readyz, then kills the turn requests it receives (after reading them): every
 * one ("reset", "close"), or only the second and later of a connection ("reuse-*": the first is
 * answered with keep-alive). `seen` gets every request id; `killed` those it killed, with the
 * request's position on its connection.
 */
async function startDyingBackend(
  mode: Exclude<Mode, "refuse">,
  seen: string[],
  killed: Map<string, number>,
): Promise<{ port: number; server: NetServer }> {
  const port = await freePort();
  const reuse = mode.startsWith("reuse-");
  const server: NetServer = createServer((socket: Socket) => {
    socket.on("error", () => {});
    let onConnection = 0;
    socket.on("data", (data) => {
      const text = data.toString("latin1");
      if (text.startsWith("GET /readyz")) {
        socket.end("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        return;
      }
      onConnection++;
      const id = requestId(text);
      if (id !== undefined) seen.push(id);
      if (reuse && onConnection === 1) {
        socket.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        return;
      }
      if (id !== undefined) killed.set(id, onConnection);
      if (mode.endsWith("reset")) socket.resetAndDestroy();
      else socket.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  cleanups.push(() => void server.close());
  return { port, server };
}

async function startHealthyBackend(seen: string[]): Promise<number> {
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (request) => {
      const id = request.headers.get("x-req");
      if (id !== null) seen.push(id);
      return new Response("ok");
    },
  });
  cleanups.push(() => server.stop(true));
  return server.port as number;
}

async function startHaproxy(aPort: number, bPort: number, lbMode: LbMode): Promise<{ port: number; socket: string }> {
  const haproxy = requireBinary("haproxy");
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-haproxy-retries-"));
  const port = await freePort();
  const config = renderHaproxyConfig({
    servers: [
      { name: "a", address: "127.0.0.1", port: aPort },
      { name: "b", address: "127.0.0.1", port: bPort },
    ],
    bind: `127.0.0.1:${port}`,
    statsBind: `127.0.0.1:${await freePort()}`,
    statsSocket: join(dir, "haproxy.sock"),
    checkInterMs: 100,
    checkRise: 1,
    lbMode,
  });
  writeFileSync(join(dir, "haproxy.cfg"), config);
  const child = Bun.spawn([haproxy, "-db", "-f", join(dir, "haproxy.cfg")], { stdout: "ignore", stderr: "ignore" });
  cleanups.push(async () => {
    child.kill("SIGKILL");
    await child.exited;
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor("haproxy", async () => (await rawGet(port, "/readyz", "probe")) === 200);
  await waitFor(
    "both servers UP",
    async () => Object.values(await serverStats(join(dir, "haproxy.sock"), "status")).join() === "UP,UP",
  );
  return { port, socket: join(dir, "haproxy.sock") };
}

/** A column of HAProxy's `show stat` for each server of the app backend, over the admin socket. */
function serverStats(socketPath: string, column: string): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    let csv = "";
    const socket = connect(socketPath, () => socket.write("show stat\n"));
    socket.on("data", (data) => {
      csv += data.toString();
    });
    socket.on("error", reject);
    socket.on("close", () => {
      const [head = "", ...rows] = csv.split("\n");
      const header = head.replace(/^# /, "").split(",");
      const result: Record<string, string> = {};
      for (const row of rows) {
        const cells = row.split(",");
        const server = cells[header.indexOf("svname")];
        if (cells[0] === "turnomatic_apps" && server !== undefined && server !== "BACKEND") {
          result[server] = cells[header.indexOf(column)] ?? "";
        }
      }
      resolve(result);
    });
  });
}

/** One request on its own connection, never resent (fetch would resend a GET on a dropped connection). */
function rawGet(port: number, path: string, id: string): Promise<number> {
  return new Promise((resolve) => {
    let answer = "";
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(`GET ${path} HTTP/1.1\r\nhost: lb\r\nx-req: ${id}\r\nconnection: close\r\n\r\n`);
    });
    socket.setTimeout(5000, () => socket.destroy());
    socket.on("data", (data) => {
      answer += data.toString("latin1");
    });
    socket.on("error", () => {});
    socket.on("close", () => resolve(answer.startsWith("HTTP/1.1 ") ? Number(answer.slice(9, 12)) : 0));
  });
}

async function scenario(mode: Mode, lbMode: LbMode) {
  const seenByA: string[] = [];
  const seenByB: string[] = [];
  const killed = new Map<string, number>();
  const a = await startDyingBackend(mode === "refuse" ? "close" : mode, seenByA, killed);
  const lb = await startHaproxy(a.port, await startHealthyBackend(seenByB), lbMode);
  // "refuse": a was UP a moment ago and now refuses connections (its listener is closed).
  if (mode === "refuse") a.server.close();
  const statuses = new Map<string, number>();
  // Keep-alive client for the reuse modes (so HAProxy has later requests of a session to put on
  // pooled server connections), one connection per request otherwise.
  const client = mode.startsWith("reuse-") ? new RawKeepAliveConnection(`http://127.0.0.1:${lb.port}`) : undefined;
  cleanups.push(() => client?.close());
  // Sequential requests with pauses: the passive check marks "a" down after an error, and the
  // active check (every 100 ms, rise 1) brings it back, so "a" keeps receiving requests.
  for (let i = 0; i < 40; i++) {
    const id = String(i);
    if (client === undefined) statuses.set(id, await rawGet(lb.port, "/turno/x", id));
    else statuses.set(id, (await client.request("/turno/x", 5000, { "x-req": id }))?.status ?? 0);
    await Bun.sleep(30);
  }
  const all = [...seenByA, ...seenByB];
  const resent = [...new Set(all.filter((id, i) => all.indexOf(id) !== i))];
  const redispatched = Number((await serverStats(lb.socket, "wredis")).a ?? 0);
  return { seenByA, seenByB, killed, statuses, resent, redispatched };
}

describe("HAProxy template: retries", () => {
  for (const lbMode of ["keepalive", "strict"] as const) {
    for (const mode of ["reset", "close"] as const) {
      test(`${lbMode}: a request the app received and then ${mode === "reset" ? "reset" : "closed unanswered"} is never resent`, async () => {
        const { killed, statuses, resent } = await scenario(mode, lbMode);
        console.log(`haproxy-retries (${lbMode}, ${mode}): a killed ${killed.size} of 40 requests, resent: ${resent.length}`);
        expect(killed.size).toBeGreaterThan(0); // the fault was exercised
        expect(resent).toEqual([]);
        for (const id of killed.keys()) expect(statuses.get(id)).not.toBe(200);
      });
    }

    test(`${lbMode}: a refused connection is retried on the other server: the request succeeds once`, async () => {
      const { seenByB, statuses, redispatched, resent } = await scenario("refuse", lbMode);
      expect(redispatched).toBeGreaterThan(0); // a was tried, refused, and the request went to b
      expect([...statuses.values()].every((status) => status === 200)).toBe(true);
      expect(seenByB.filter((id) => /^\d+$/.test(id)).length).toBe(40);
      expect(resent).toEqual([]);
    });
  }

  for (const mode of ["reuse-reset", "reuse-close"] as const) {
    test(`keepalive: a request that died on a reused server connection (${mode.slice(6)}) is never resent`, async () => {
      const { killed, statuses, resent } = await scenario(mode, "keepalive");
      const onReused = [...killed.values()].filter((position) => position >= 2).length;
      console.log(
        `haproxy-retries (keepalive, ${mode}): a killed ${killed.size} requests, ${onReused} on reused connections; statuses of those: ${JSON.stringify([...killed.keys()].map((id) => statuses.get(id)))}; resent: ${resent.length}`,
      );
      // The fault was exercised where it matters: on pooled connections HAProxy reused.
      expect(onReused).toBeGreaterThan(0);
      expect(resent).toEqual([]);
      for (const id of killed.keys()) expect(statuses.get(id)).not.toBe(200);
    });
  }
});
