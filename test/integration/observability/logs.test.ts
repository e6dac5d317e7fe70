/**
 * Logs: start-up logs the configuration with secrets redacted; a Redis outage is logged as a few
 * store.* lines (not one per reconnect attempt) and its recovery as store.ready; the access log is
 * off by default and, when sampled at 1, has one line per response.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startRedis, type RedisProcess } from "../../../harness/redis-server.ts";
import { ADMIN_TOKEN, parseLogLines, startService } from "../../../harness/service.ts";
import { waitFor } from "../../../harness/ports.ts";

const PASSWORD = "s3cret-redis-password";
let redis: RedisProcess;
beforeAll(async () => {
  // No requirepass (the helper's restart would not keep it): ioredis accepts a password that the server
  // does not need, which is all the redaction check needs.
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

test("start is logged with secrets redacted; a store outage is a handful of lines, then ready", async () => {
  const url = redis.url.replace("redis://", `redis://:${PASSWORD}@`);
  const service = await startService({ store: url, env: { TURNOMATIC_DEADLINE_MS: "200" } });
  try {
    const start = parseLogLines(service.logs()).find((line) => line.event === "start");
    expect(start?.level).toBe("info");
    expect(JSON.stringify(start)).not.toContain(PASSWORD);
    expect(JSON.stringify(start)).not.toContain(ADMIN_TOKEN);
    expect((start?.config as { adminToken?: string } | undefined)?.adminToken).toBe("<redacted>");

    await redis.kill();
    // Keep the client reconnecting for a few seconds (many retries) while requests fail.
    const until = performance.now() + 4000;
    while (performance.now() < until) {
      expect((await fetch(`${service.url}/turno/logs`, { method: "POST" })).status).toBe(503);
      await Bun.sleep(100);
    }
    await redis.restart();
    await waitFor(
      "store.ready after the restart",
      () => parseLogLines(service.logs()).filter((l) => l.event === "store.ready").length >= 2,
    );
    const store = parseLogLines(service.logs()).filter(
      (line) => line.event?.startsWith("store.") && line.event !== "store.durability",
    );
    const outage = store.slice(store.findIndex((line) => line.event === "store.close"));
    expect(outage[0]?.level).toBe("warn");
    expect(outage.some((line) => line.event === "store.reconnecting")).toBe(true);
    expect(outage.some((line) => line.event === "store.error")).toBe(true);
    expect(outage.at(-1)?.event).toBe("store.ready");
    // ioredis retried about every 50..1000 ms for 4 s; the log says it once, plus distinct errors.
    expect(outage.length).toBeLessThanOrEqual(8);
    expect(service.logs()).not.toContain(PASSWORD);
    expect(parseLogLines(service.logs()).some((line) => line.event === "http.access")).toBe(false);
  } finally {
    await service.stop("SIGKILL");
  }
}, 60_000);

test("sampled access log: one line per response at ratio 1", async () => {
  const service = await startService({ store: "memory:", env: { TURNOMATIC_ACCESS_LOG_SAMPLE: "1" } });
  try {
    for (let i = 0; i < 5; i++) await fetch(`${service.url}/turno/access`, { method: "POST" });
    await fetch(`${service.url}/nowhere`);
    await waitFor(
      "access lines",
      () => parseLogLines(service.logs()).filter((l) => l.event === "http.access" && l.route !== "healthz").length >= 6,
    );
    // (startService's /healthz probes are logged too; count the requests made here.)
    const access = parseLogLines(service.logs()).filter((line) => line.event === "http.access" && line.route !== "healthz");
    expect(access.length).toBe(6);
    expect(access[0]).toMatchObject({ route: "turno", method: "POST", status: 200 });
    expect(access.at(-1)).toMatchObject({ route: "not_found", status: 404 });
  } finally {
    await service.stop("SIGKILL");
  }
}, 60_000);
