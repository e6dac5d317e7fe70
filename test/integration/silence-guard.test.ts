/**
 * The silence guard against a real redis-server kept busy by a slow script (Redis answers nobody
 * while a script runs): a command that times out on a connection silent for the threshold makes the
 * guard reconnect; one that times out soon after a reply does not. The network version of the same
 * failure is test/chaos/redis-link-cut.test.ts.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import Redis from "ioredis";
import { baseRedisOptions } from "../../src/stores/redis-store.ts";
import { SilenceGuard } from "../../src/stores/silence-guard.ts";
import { type RedisProcess, startRedis } from "../../harness/redis-server.ts";

const COMMAND_TIMEOUT_MS = 200;
let redis: RedisProcess;
const clients: Redis[] = [];

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const client of clients) client.disconnect();
  await redis.stop();
});

function client(): Redis {
  const created = new Redis(redis.url, baseRedisOptions(COMMAND_TIMEOUT_MS));
  created.on("error", () => {});
  clients.push(created);
  return created;
}

/** Keeps Redis busy (answering no one) for about `ms`, from a connection of its own. */
function busyFor(ms: number): Promise<unknown> {
  const busy = new Redis(redis.url);
  clients.push(busy);
  return busy.eval(
    `local t = redis.call('TIME'); local stop = t[1] * 1e6 + t[2] + ${ms * 1000}
    repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] >= stop; return 1`,
    0,
  );
}

test("a timeout on a connection silent past the threshold reconnects it, and it works again", async () => {
  const watched = client();
  const reconnects: number[] = [];
  const guard = new SilenceGuard(watched, COMMAND_TIMEOUT_MS, (silentMs) => reconnects.push(silentMs));
  expect(await guard.watch(watched.ping())).toBe("PONG");
  const busy = busyFor(800);
  await Bun.sleep(50);
  await expect(guard.watch(watched.ping())).rejects.toThrow("Command timed out");
  expect(reconnects).toHaveLength(1);
  expect(reconnects[0]).toBeGreaterThanOrEqual(COMMAND_TIMEOUT_MS);
  await busy;
  await Bun.sleep(300);
  expect(await guard.watch(watched.ping())).toBe("PONG");
  expect(reconnects).toHaveLength(1);
});

test("a timeout before the connection has been silent for the threshold keeps the connection", async () => {
  const watched = client();
  const reconnects: number[] = [];
  const guard = new SilenceGuard(watched, 5000, (silentMs) => reconnects.push(silentMs));
  expect(await guard.watch(watched.ping())).toBe("PONG");
  const closes: string[] = [];
  watched.on("close", () => closes.push("close"));
  const busy = busyFor(500);
  await Bun.sleep(50);
  await expect(guard.watch(watched.ping())).rejects.toThrow("Command timed out");
  await busy;
  expect(await guard.watch(watched.ping())).toBe("PONG");
  expect(reconnects).toEqual([]);
  expect(closes).toEqual([]);
});
