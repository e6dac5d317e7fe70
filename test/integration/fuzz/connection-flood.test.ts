/**
 * More connections than the process has file descriptors. Bun.serve has no connection cap, so the
 * open-file limit is the cap (src/http/open-file-limit.ts): start-up warns when it is low, and a
 * flood past it must not crash the process or lose a number; once the flood closes, clients are
 * served again. (While it lasts, new clients wait and Bun spins a core: printed, not asserted.)
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import { procCpuSeconds } from "../../../bench/toolkit/proc.ts";
import { requireBinary } from "../../../harness/binaries.ts";
import { waitFor } from "../../../harness/ports.ts";
import { type ServiceProcess, startService } from "../../../harness/service.ts";
import { rawExchange } from "./raw-http.ts";

const LIMIT = 256;
const FLOOD = 400;
let service: ServiceProcess;

beforeAll(async () => {
  const prlimit = requireBinary("prlimit", "apt-get install util-linux");
  service = await startService({ store: "memory:", wrapper: [prlimit, `--nofile=${LIMIT}:${LIMIT}`] });
}, 30_000);
afterAll(async () => {
  await service?.stop();
});

async function turno(id: string): Promise<number> {
  const response = await fetch(`${service.url}/turno/${id}`, { signal: AbortSignal.timeout(2000) });
  return ((await response.json()) as { turno: number }).turno;
}

test(`a low open-file limit is warned about at start, and ${FLOOD} connections against ${LIMIT} descriptors do not break the service`, async () => {
  const warning = service
    .logs()
    .split("\n")
    .find((line) => line.includes('"event":"start.open_file_limit"'));
  expect(warning).toContain(`"limit":${LIMIT}`);
  expect(await turno("flood")).toBe(1);

  const sockets: Socket[] = [];
  for (let i = 0; i < FLOOD; i++) {
    const socket = connect(service.port, "127.0.0.1");
    socket.on("error", () => {});
    sockets.push(socket);
  }
  await Bun.sleep(500);
  const pid = service.process.pid;
  const cpuBefore = procCpuSeconds(pid);
  await Bun.sleep(1000);
  const cpuDuringFlood = procCpuSeconds(pid) - cpuBefore;
  // A new client (a fresh connection, not fetch's pooled one) during the flood.
  const fresh = await rawExchange(service.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", {
    timeoutMs: 1000,
  });
  const duringFlood = fresh.status === null ? (fresh.timedOut ? "no answer in 1 s" : "closed") : String(fresh.status);
  for (const socket of sockets) socket.destroy();
  const closedAt = performance.now();
  await waitFor("healthz after the flood", async () => (await fetch(`${service.url}/healthz`)).ok, 10_000);
  console.log(
    `connection flood: ${FLOOD} connections, limit ${LIMIT}: a new client's /healthz during it: ${duringFlood}, CPU ${cpuDuringFlood.toFixed(2)} s per s; served again ${Math.round(performance.now() - closedAt)} ms after it closed`,
  );
  expect(service.process.exitCode).toBeNull();
  expect(await turno("flood")).toBe(2);
}, 30_000);
