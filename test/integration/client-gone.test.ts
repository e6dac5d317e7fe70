/**
 * A client that hangs up while its number is being reserved: the number is counted as abandoned
 * (turnomatic_numbers_abandoned_total), handed to nobody, and the next client gets the one after it.
 * The reservation is held in flight by a blackholed proxy between the service and a real Redis.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connect } from "node:net";
import { type FaultProxy, startFaultProxy } from "../../harness/fault-proxy.ts";
import { type RedisProcess, startRedis } from "../../harness/redis-server.ts";
import { type ServiceProcess, startService } from "../../harness/service.ts";

let redis: RedisProcess;
let proxy: FaultProxy;
let service: ServiceProcess;

beforeAll(async () => {
  redis = await startRedis();
  proxy = await startFaultProxy("127.0.0.1", redis.port);
  service = await startService({ store: proxy.url, env: { TURNOMATIC_DEADLINE_MS: "5000" } });
});
afterAll(async () => {
  await service?.stop();
  await proxy?.close();
  await redis?.stop();
});

async function turno(id: string): Promise<number> {
  const response = await fetch(`${service.url}/turno/${id}`);
  expect(response.status).toBe(200);
  return ((await response.json()) as { turno: number }).turno;
}

async function abandonedTotal(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${service.metricsPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("turnomatic_numbers_abandoned_total"));
  return Number(line?.split(" ")[1] ?? Number.NaN);
}

test("the number of a client that went away is abandoned, counted, and given to nobody", async () => {
  expect(await turno("gone")).toBe(1);
  expect(await abandonedTotal()).toBe(0);

  proxy.blackhole();
  const socket = connect(service.port, "127.0.0.1");
  let answered = "";
  socket.on("data", (chunk) => {
    answered += chunk.toString();
  });
  socket.on("error", () => {});
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  socket.write("GET /turno/gone HTTP/1.1\r\nHost: x\r\n\r\n");
  await Bun.sleep(300); // its reservation is now held by the proxy
  socket.destroy();
  await Bun.sleep(100);
  proxy.heal(); // Redis runs the reservation: number 2 comes back for a client that is gone

  expect(await turno("gone")).toBe(3);
  expect(answered).toBe("");
  expect(await abandonedTotal()).toBe(1);
  expect(await (await fetch(`${service.url}/turno/gone/actual`)).json()).toMatchObject({ turno: 3 });
});
