/**
 * The HAProxy template never resends a request that reached an app, and does retry (elsewhere) a
 * request whose connection could not be made. Real haproxy on loopback, two backends:
 * - "a" takes each turn request and then dies on it (reset, or close without an answer), or
 *   refuses connections; it answers health checks so that HAProxy keeps routing to it;
 * - "b" answers 200.
 * Every request carries a unique X-Req; one seen by both a and b was resent: a turn counted twice.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server as NetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderHaproxyConfig } from "../../scripts/cluster/haproxy-config.ts";
import { requireBinary } from "../helpers/binaries.ts";
import { freePort, waitFor } from "../helpers/ports.ts";

type Mode = "reset" | "close" | "refuse";

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function requestId(text: string): string | undefined {
  return /\r\nx-req: (\d+)/i.exec(text)?.[1];
}

/** Backend "a": answers /readyz, then kills every other request it receives (after reading it). */
async function startDyingBackend(mode: Exclude<Mode, "refuse">, seen: Set<string>): Promise<{ port: number; server: NetServer }> {
  const port = await freePort();
  const server: NetServer = createServer((socket: Socket) => {
    socket.on("error", () => {});
    socket.once("data", (data) => {
      const text = data.toString("latin1");
      if (text.startsWith("GET /readyz")) {
        socket.end("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        return;
      }
      const id = requestId(text);
      if (id !== undefined) seen.add(id);
      if (mode === "reset") socket.resetAndDestroy();
      else socket.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  cleanups.push(() => void server.close());
  return { port, server };
}

async function startHealthyBackend(seen: Set<string>): Promise<number> {
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (request) => {
      const id = request.headers.get("x-req");
      if (id !== null) seen.add(id);
      return new Response("ok");
    },
  });
  cleanups.push(() => server.stop(true));
  return server.port as number;
}

async function startHaproxy(aPort: number, bPort: number): Promise<{ port: number; socket: string }> {
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

async function scenario(mode: Mode) {
  const seenByA = new Set<string>();
  const seenByB = new Set<string>();
  const a = await startDyingBackend(mode === "refuse" ? "close" : mode, seenByA);
  const lb = await startHaproxy(a.port, await startHealthyBackend(seenByB));
  // "refuse": a was UP a moment ago and now refuses connections (its listener is closed).
  if (mode === "refuse") a.server.close();
  const lbPort = lb.port;
  const statuses = new Map<string, number>();
  // Sequential requests with pauses: the passive check marks "a" down after an error, and the
  // active check (every 100 ms, rise 1) brings it back, so "a" keeps receiving requests.
  for (let i = 0; i < 40; i++) {
    statuses.set(String(i), await rawGet(lbPort, "/turno/x", String(i)));
    await Bun.sleep(30);
  }
  const resent = [...seenByA].filter((id) => seenByB.has(id));
  const redispatched = Number((await serverStats(lb.socket, "wredis")).a ?? 0);
  return { seenByA, seenByB, statuses, resent, redispatched };
}

describe("HAProxy template: retries", () => {
  for (const mode of ["reset", "close"] as const) {
    test(`a request the app received and then ${mode === "reset" ? "reset" : "closed unanswered"} is never resent`, async () => {
      const { seenByA, statuses, resent } = await scenario(mode);
      console.log(`haproxy-retries (${mode}): a received ${seenByA.size} of 40 requests, resent: ${resent.length}`);
      expect(seenByA.size).toBeGreaterThan(0); // the fault was exercised
      expect(resent).toEqual([]);
      for (const id of seenByA) expect(statuses.get(id)).not.toBe(200);
    });
  }

  test("a refused connection is retried on the other server: the request succeeds once", async () => {
    const { seenByB, statuses, redispatched } = await scenario("refuse");
    expect(redispatched).toBeGreaterThan(0); // a was tried, refused, and the request went to b
    expect([...statuses.values()].every((status) => status === 200)).toBe(true);
    expect([...seenByB].filter((id) => /^\d+$/.test(id)).length).toBe(40);
  });
});
